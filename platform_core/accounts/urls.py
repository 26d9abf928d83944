from django.urls import path

from platform_core.accounts import people_views, views

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password/", views.password_change, name="password-change"),
    # people: managers' pages, and the invited person's one-time link
    path("people/", people_views.people_list, name="people"),
    path("people/invite/", people_views.people_invite, name="people-invite"),
    path("people/add-existing/", people_views.people_add_existing, name="people-add-existing"),
    path("people/<uuid:pk>/", people_views.person_detail, name="person"),
    path("people/<uuid:pk>/grant/", people_views.person_grant, name="person-grant"),
    path("people/<uuid:pk>/roles/<uuid:membership_pk>/revoke/", people_views.person_revoke, name="person-revoke"),
    path("people/<uuid:pk>/unlock/", people_views.person_unlock, name="person-unlock"),
    path("people/<uuid:pk>/deactivate/", people_views.person_deactivate, name="person-deactivate"),
    path("people/invitations/<uuid:pk>/revoke/", people_views.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:token>/", people_views.invitation_accept, name="invitation-accept"),
]
