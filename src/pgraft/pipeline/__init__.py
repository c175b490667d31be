"""The pipeline as data: the stage table, the code each stage runs, and the engines written from them."""

from pgraft.pipeline.table import BY_NAME, STAGES, STAMPS, Port, Stage, instance_name, instances, path

__all__ = ["BY_NAME", "STAGES", "STAMPS", "Port", "Stage", "instance_name", "instances", "path"]
