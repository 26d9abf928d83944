from django.urls import path

from trials import monitoring_views, views

app_name = "trials"
urlpatterns = [
    path("", views.trial_list, name="trial-list"),
    path("new/", views.trial_create, name="trial-create"),
    path("cases/<uuid:pk>/", views.case_detail, name="case-detail"),
    path("cases/<uuid:pk>/status/", views.case_status, name="case-status"),
    path("cases/<uuid:pk>/rnfl/", views.case_rnfl, name="case-rnfl"),
    path("cases/<uuid:pk>/queries/", monitoring_views.query_raise, name="query-raise"),
    path("queries/<uuid:pk>/<str:step>/", monitoring_views.query_step, name="query-step"),
    path("files/<uuid:pk>/retire/", views.case_file_retire, name="case-file-retire"),
    path("files/<uuid:pk>/<str:variant>/", views.case_file, name="case-file"),
    path("formats/visual-field-csv/", views.visual_field_csv_format, name="vf-csv-format"),
    path("formats/visual-field-csv/template.csv", views.visual_field_csv_template, name="vf-csv-template"),
    path("<slug:slug>/", views.trial_detail, name="trial-detail"),
    path("<slug:slug>/edit/", views.trial_edit, name="trial-edit"),
    path("<slug:slug>/transition/", views.trial_transition, name="trial-transition"),
    path("<slug:slug>/monitoring/", monitoring_views.monitoring, name="monitoring"),
    path("<slug:slug>/queries/", monitoring_views.query_list, name="query-list"),
    path("<slug:slug>/sites/add/", views.site_add, name="site-add"),
    path("<slug:slug>/sites/<uuid:pk>/", views.site_edit, name="site-edit"),
    path("<slug:slug>/subjects/", views.subject_list, name="subject-list"),
    path("<slug:slug>/subjects/enrol/", views.subject_enrol, name="subject-enrol"),
    path("<slug:slug>/subjects/<str:pseudonym>/", views.subject_detail, name="subject-detail"),
    path("<slug:slug>/subjects/<str:pseudonym>/withdraw/", views.subject_withdraw, name="subject-withdraw"),
    path("<slug:slug>/subjects/<str:pseudonym>/cases/add/", views.case_add, name="case-add"),
]
