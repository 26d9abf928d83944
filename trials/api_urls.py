from django.urls import path

from trials import apis, file_apis

app_name = "trials"
urlpatterns = [
    path("trials/", apis.TrialListApi.as_view(), name="trial-list"),
    path("trials/create/", apis.TrialCreateApi.as_view(), name="trial-create"),
    path("trials/<slug:slug>/", apis.TrialDetailApi.as_view(), name="trial-detail"),
    path("trials/<slug:slug>/transition/", apis.TrialTransitionApi.as_view(), name="trial-transition"),
    path("trials/<slug:slug>/sites/", apis.TrialSiteListApi.as_view(), name="trial-site-list"),
    path("trials/<slug:slug>/sites/add/", apis.TrialSiteAddApi.as_view(), name="trial-site-add"),
    path("trials/<slug:slug>/sites/<uuid:pk>/", apis.TrialSiteUpdateApi.as_view(), name="trial-site-update"),
    path("trials/<slug:slug>/enrol/", apis.SubjectEnrollApi.as_view(), name="subject-enroll"),
    path("subjects/", apis.SubjectListApi.as_view(), name="subject-list"),
    path("subjects/<uuid:pk>/", apis.SubjectDetailApi.as_view(), name="subject-detail"),
    path("subjects/<uuid:pk>/withdraw/", apis.SubjectWithdrawApi.as_view(), name="subject-withdraw"),
    path("subjects/<uuid:pk>/cases/", apis.CaseCreateApi.as_view(), name="case-create"),
    path("cases/", apis.CaseListApi.as_view(), name="case-list"),
    path("cases/<uuid:pk>/", apis.CaseDetailApi.as_view(), name="case-detail"),
    path("cases/<uuid:pk>/status/", apis.CaseStatusApi.as_view(), name="case-status"),
    path("cases/<uuid:pk>/rnfl/", apis.CaseRnflApi.as_view(), name="case-rnfl"),
    path("cases/<uuid:pk>/files/", file_apis.CaseFileListApi.as_view(), name="case-file-list"),
    path("cases/<uuid:pk>/files/upload/", file_apis.CaseFileUploadApi.as_view(), name="case-file-upload"),
]
