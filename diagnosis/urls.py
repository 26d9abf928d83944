from django.urls import path

from diagnosis import views

app_name = "diagnosis"
urlpatterns = [
    path("predictions/<uuid:pk>/overlay/", views.prediction_overlay, name="prediction-overlay"),
    path("trials/<slug:slug>/fusion/calibrate/", views.fusion_calibrate, name="fusion-calibrate"),
]
