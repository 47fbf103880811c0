"""herd core: the gRPC service, scheduler, model store, templates and runners."""
