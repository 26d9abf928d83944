from django.urls import path

from diagnosis import registry_views, views

app_name = "diagnosis"
urlpatterns = [
    path("predictions/<uuid:pk>/overlay/", views.prediction_overlay, name="prediction-overlay"),
    path("trials/<slug:slug>/fusion/calibrate/", views.fusion_calibrate, name="fusion-calibrate"),
    # people (issue 10, item 5): the model registry's pages, for trial managers
    path("models/", registry_views.model_list, name="model-list"),
    path("models/register/", registry_views.model_register_page, name="model-register"),
    path("models/<uuid:pk>/", registry_views.model_card, name="model-card"),
    path("models/<uuid:pk>/status/", registry_views.model_status, name="model-status"),
]
