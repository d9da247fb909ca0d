"""What the tests share: servers (in-thread and as processes), fakes of the outside world
(Twilio, webhook receivers), databases of a test's own, and builders of request bodies.

    databases   PostgreSQL helpers and a database of a test's own on the suite's backend
    server      Server (a real uvicorn server in a thread) and Tenant
    deployment  Deployment: the CLI, API server and worker subprocesses on one database
    net         free_port, a fast-stopping local HTTP server, post_unfinished (raw sockets)
    api         request bodies and the bulk-then-find `trigger_one`
    receivers   the clinic's webhook endpoint
    fake_twilio FakeTwilio: Twilio's Messages API
    journeys    journey YAML several test modules use

conftest.py holds the fixtures; test modules import from here, never from conftest.
"""
