"""The participants' side: a web app and API over the warehouse, each caller scoped to its own
participants (people by their sign-in group, machines by API token)."""
