from django.urls import path

from diagnosis import apis

app_name = "diagnosis"
urlpatterns = [
    path("models/", apis.ModelVersionListApi.as_view(), name="model-list"),
    path("cases/<uuid:pk>/inference-jobs/", apis.CaseInferenceJobListApi.as_view(), name="case-job-list"),
    path("cases/<uuid:pk>/predictions/", apis.CasePredictionListApi.as_view(), name="case-prediction-list"),
]
