from django.urls import path

from reading import views

app_name = "reading"
urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("trials/<slug:slug>/next/<str:phase>/", views.read_next, name="next"),
    path("trials/<slug:slug>/manage/", views.manage, name="manage"),
    path("trials/<slug:slug>/adjudication/", views.adjudication_queue, name="adjudication"),
    path("adjudications/<uuid:pk>/files/<uuid:file_pk>/", views.adjudication_file, name="adjudication-file"),
    path("reads/<uuid:pk>/", views.read_page, name="read"),
    path("reads/<uuid:pk>/files/<uuid:file_pk>/<str:variant>/", views.read_file, name="read-file"),
    path("reads/<uuid:pk>/ai/<uuid:prediction_pk>/overlay/", views.read_overlay, name="read-overlay"),
    path("trials/<slug:slug>/signed/", views.signed_reads, name="signed-reads"),
    path("reads/<uuid:pk>/amend/", views.read_amend_page, name="amend"),
    path("trials/<slug:slug>/reset/", views.reset_page, name="reset"),
    path("trials/<slug:slug>/calibration/", views.calibration_page, name="calibration"),
    path("trials/<slug:slug>/reference/", views.reference_page, name="reference"),
]
