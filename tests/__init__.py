from platform_core.audit.vocabulary import register_actions

# Actions the tests of the audit trail itself record (the product's own are in each app's auditing.py).
register_actions(
    "tests",
    {
        "test.event": "an event recorded by a test",
        "test.rollback": "an event recorded by a test inside a transaction that fails",
        "test.h1": "a test event at hospital H01",
        "test.h2": "a test event at hospital H02",
        "test.more": "one more test event",
        "test.delete": "a row deleted by a test of audited_delete",
    },
)
