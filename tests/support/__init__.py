"""What the tests share: servers (in-thread and as processes), fakes of the outside world
(Twilio, webhook receivers, an SMTP server), databases of a test's own, and builders of request
bodies and journeys.

    databases   PostgreSQL helpers; own_database (on the suite's backend); migrated_sqlite
    server      Server (a real uvicorn server in a thread), Tenant, START, EXAMPLE
    deployment  Deployment: the CLI, API server and worker subprocesses on one database
    cli         JOURNEYS (the command line) and clean_env
    net         free_port, LocalHttpServer (stops at once), post_unfinished (raw sockets)
    api         request bodies (SEED_*), bulk and the bulk-then-find trigger_one
    journeys    journey YAML several test modules use
    receivers   WebhookReceiver: the clinic's webhook endpoint
    fake_twilio FakeTwilio (Twilio's Messages API) and twilio_config
    smtp        Mailbox (an aiosmtpd handler) and authenticator
    consent     ConsentServer and Twilio's signed inbound posts (test_consent, test_opt_outs)
    clocks      LaggingClock

conftest.py holds the fixtures; test modules import from here, never from conftest or from
one another.
"""
