"""The ground floor: settings, database, Redis, events, fan-out, errors, pagination, geometry,
logging. No domain lives here and nothing here imports a domain package."""
