from django.apps import AppConfig


class ReadingConfig(AppConfig):
    name = "reading"
    verbose_name = "Blind reading"

    def ready(self) -> None:
        # The kernel's navigation lists what apps add; readers get their worklist.
        from django.db.backends.signals import connection_created

        from platform_core.accounts.models import Role
        from platform_core.accounts.navigation import NAV_ITEMS, NavItem
        from reading.queue import queue_case_completed, sqlite_functions
        from reading.selectors import reference_lock_reason
        from trials.hooks import on_case_completed, on_reference_lock_check

        # Trials cannot import reading: its reference import asks this hook whether the reference is locked.
        on_reference_lock_check(reference_lock_reason)
        # A case that becomes complete joins the readers' queues (their order, kept: reading.queue).
        on_case_completed(queue_case_completed)
        connection_created.connect(sqlite_functions, dispatch_uid="reading.queue.sqlite_functions")

        item = NavItem("Reading", "reading:worklist", frozenset({Role.READER}))
        if item not in NAV_ITEMS:
            NAV_ITEMS.insert(2, item)
