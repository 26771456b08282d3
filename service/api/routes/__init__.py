"""One router per resource (studies, trials, pruner, operations), each a thin adapter: parse,
call a use case (``service.usecases``) or a read-only query (``service.db``), shape the answer
(``service.api.views``)."""
