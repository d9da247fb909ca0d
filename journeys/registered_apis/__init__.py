"""Registered APIs: the clinic systems an org's `http_request` steps call by name (`api: ehr`,
`path: /patients/{{ patientId }}`), each with a base URL and how to authenticate — an API key (in
a header or the query), basic, a bearer token, or OAuth2 client credentials (the worker fetches,
caches and refreshes the token). Credentials are sealed like provider credentials
(JOURNEYS_SECRET_KEY), managed with `journeys api set|list|remove`, and never printed or logged;
the outbound address policy applies to the API and to its token endpoint alike.

- `settings.py`: what each kind of authentication needs, checked;
- `service.py`: registering, listing and removing (services; never commit);
- `calls.py`: what the worker does with a call to a registered API."""
