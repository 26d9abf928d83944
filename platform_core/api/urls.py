from django.urls import path

from platform_core.api import views

urlpatterns = [
    path("auth/token/", views.TokenObtainApi.as_view(), name="token-obtain"),
    path("me/", views.MeApi.as_view(), name="me"),
    path("hospitals/", views.HospitalListApi.as_view(), name="hospital-list"),
    path("audit-events/", views.AuditEventListApi.as_view(), name="audit-event-list"),
]
