from django.urls import path

from evaluation.apis import EXPORT_APIS

app_name = "evaluation"
urlpatterns = [
    path(f"evaluation/trials/<slug:slug>/exports/{name}.csv", view.as_view(), name=f"export-{name}")
    for name, view in EXPORT_APIS.items()
]
