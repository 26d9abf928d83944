from django.urls import path

from evaluation import views

app_name = "evaluation"
urlpatterns = [
    path("trials/<slug:slug>/exports/", views.export_page, name="exports"),
    path("trials/<slug:slug>/exports/<str:name>.csv", views.export_download, name="export-download"),
    path("trials/<slug:slug>/dashboard/", views.dashboard_page, name="dashboard"),
    path("trials/<slug:slug>/dashboard/status/", views.dashboard_status, name="dashboard-status"),
]
