from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from platform_core.accounts import views as account_views

api_v1 = [
    path("", include(("platform_core.api.urls", "core"))),
    path("", include("trials.api_urls")),
    path("", include("diagnosis.api_urls")),
    path("", include("reading.api_urls")),
    path("", include("evaluation.api_urls")),
]

urlpatterns = [
    path("", account_views.home, name="home"),
    path("accounts/", include("platform_core.accounts.urls")),
    path("audit/", include("platform_core.audit.urls")),
    path("trials/", include("trials.urls")),
    path("diagnosis/", include("diagnosis.urls")),
    path("reading/", include("reading.urls")),
    path("evaluation/", include("evaluation.urls")),
    path("admin/login/", account_views.admin_login, name="admin-login"),
    # The admin's own password change neither counted wrong current passwords nor audited the change.
    path("admin/password_change/", RedirectView.as_view(pattern_name="accounts:password-change")),
    path("admin/password_change/done/", RedirectView.as_view(pattern_name="home")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "platform_core.api.exceptions.api_aware_not_found"
handler500 = "platform_core.api.exceptions.api_aware_server_error"
