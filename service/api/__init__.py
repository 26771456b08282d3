"""HTTP adapters: routers by resource (``routes``), typed dependencies (``deps``), error documents
(``problems``), middleware (``telemetry``, ``body_limit``, ``deadline``) and response shaping
(``views``)."""
