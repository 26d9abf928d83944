from django.urls import path

from reading import apis

app_name = "reading"
urlpatterns = [
    path("reading/trials/<slug:slug>/next/", apis.ReadNextApi.as_view(), name="read-next"),
    path("reading/trials/<slug:slug>/progress/", apis.ReaderProgressApi.as_view(), name="reader-progress"),
    path("reading/trials/<slug:slug>/readers/", apis.ReadingProgressTableApi.as_view(), name="progress-table"),
    path("reading/trials/<slug:slug>/setup/", apis.ReadingSetupApi.as_view(), name="setup"),
    path("reading/trials/<slug:slug>/assignments/", apis.ReaderAssignApi.as_view(), name="assign"),
    path("reading/trials/<slug:slug>/adjudications/", apis.AdjudicationQueueApi.as_view(), name="adjudication-queue"),
    path("reading/trials/<slug:slug>/panel/", apis.PanelMemberAddApi.as_view(), name="panel-add"),
    path("reading/trials/<slug:slug>/calibration/", apis.CalibrationCaseMarkApi.as_view(), name="calibration-mark"),
    path("reading/trials/<slug:slug>/reference-lock/", apis.ReferenceLockApi.as_view(), name="reference-lock"),
    path("reading/assignments/<uuid:pk>/end/", apis.ReaderUnassignApi.as_view(), name="unassign"),
    path("reading/adjudications/<uuid:pk>/sign/", apis.AdjudicationSignApi.as_view(), name="adjudication-sign"),
    path("reading/reads/<uuid:pk>/", apis.ReadDetailApi.as_view(), name="read-detail"),
    path("reading/reads/<uuid:pk>/draft/", apis.ReadDraftApi.as_view(), name="read-draft"),
    path("reading/reads/<uuid:pk>/sign/", apis.ReadSignApi.as_view(), name="read-sign"),
    path("reading/reads/<uuid:pk>/amend/", apis.ReadAmendApi.as_view(), name="read-amend"),
    path("reading/reads/<uuid:pk>/reset/", apis.ReadResetApi.as_view(), name="read-reset"),
    path("reading/reads/<uuid:pk>/marks/", apis.MarkAddApi.as_view(), name="mark-add"),
    path("reading/marks/<uuid:pk>/", apis.MarkChangeApi.as_view(), name="mark-change"),
]
