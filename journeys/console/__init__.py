"""The staff console: server-rendered pages under /console for the people who run patient
outreach (journeys.console.app installs it). Pages only translate between HTTP and the services."""
