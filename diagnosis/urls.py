from django.urls import path

from diagnosis import views

app_name = "diagnosis"
urlpatterns = [
    path("predictions/<uuid:pk>/overlay/", views.prediction_overlay, name="prediction-overlay"),
]
