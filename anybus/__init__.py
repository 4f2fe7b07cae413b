"""anybus: a pub/sub worker bus for asyncio and trio, built on anyio."""

from ._adapters import TypeAdapter as TypeAdapter
from ._bus import WorkerBus as WorkerBus
from ._bus import current_bus as current_bus
from ._codec import Codec as Codec
from ._directory import WorkerChange as WorkerChange
from ._directory import WorkerDirectory as WorkerDirectory
from ._directory import WorkerEvent as WorkerEvent
from ._directory import WorkerInfo as WorkerInfo
from ._exceptions import AnybusError as AnybusError
from ._exceptions import BusOverflowError as BusOverflowError
from ._exceptions import BusStateError as BusStateError
from ._exceptions import JobCancelled as JobCancelled
from ._exceptions import JobError as JobError
from ._exceptions import JobFailed as JobFailed
from ._exceptions import JobTimeout as JobTimeout
from ._exceptions import MessageRejected as MessageRejected
from ._exceptions import SerializationError as SerializationError
from ._exceptions import TransportError as TransportError
from ._exceptions import WorkerUnavailable as WorkerUnavailable
from ._job_calls import open_job as open_job
from ._job_calls import request as request
from ._job_context import JobContext as JobContext
from ._job_context import JobHandler as JobHandler
from ._job_context import job_handler as job_handler
from ._job_worker import JobWorker as JobWorker
from ._jobs import Job as Job
from ._jobs import JobResult as JobResult
from ._listen import FunctionSubscriber as FunctionSubscriber
from ._listen import MessageStream as MessageStream
from ._memory import MemoryBus as MemoryBus
from ._message_types import MessageRegistry as MessageRegistry
from ._message_types import default_registry as default_registry
from ._message_types import register_adapter as register_adapter
from ._message_types import register_message as register_message
from ._messages import BusActivateWorkerMessage as BusActivateWorkerMessage
from ._messages import BusCancelMessage as BusCancelMessage
from ._messages import BusCancelWorkerMessage as BusCancelWorkerMessage
from ._messages import BusDataMessage as BusDataMessage
from ._messages import BusDeactivateWorkerMessage as BusDeactivateWorkerMessage
from ._messages import BusEndMessage as BusEndMessage
from ._messages import BusEndWorkerMessage as BusEndWorkerMessage
from ._messages import BusJobCancelMessage as BusJobCancelMessage
from ._messages import BusJobRequestMessage as BusJobRequestMessage
from ._messages import BusJobResponseMessage as BusJobResponseMessage
from ._messages import BusJobResponseUrgentMessage as BusJobResponseUrgentMessage
from ._messages import BusJobStreamDataMessage as BusJobStreamDataMessage
from ._messages import BusJobStreamEndMessage as BusJobStreamEndMessage
from ._messages import BusJobStreamStartMessage as BusJobStreamStartMessage
from ._messages import BusJobUpdateMessage as BusJobUpdateMessage
from ._messages import BusJobUpdateRequestMessage as BusJobUpdateRequestMessage
from ._messages import BusJobUpdateUrgentMessage as BusJobUpdateUrgentMessage
from ._messages import BusLocalMessage as BusLocalMessage
from ._messages import BusMessage as BusMessage
from ._messages import BusSystemMessage as BusSystemMessage
from ._messages import BusWorkerErrorMessage as BusWorkerErrorMessage
from ._messages import BusWorkerGoodbyeMessage as BusWorkerGoodbyeMessage
from ._messages import BusWorkerLocalErrorMessage as BusWorkerLocalErrorMessage
from ._messages import BusWorkerPresenceMessage as BusWorkerPresenceMessage
from ._messages import BusWorkerPresenceQueryMessage as BusWorkerPresenceQueryMessage
from ._messages import BusWorkerReadyMessage as BusWorkerReadyMessage
from ._messages import JobStatus as JobStatus
from ._pipecat_messages import BusAddWorkerMessage as BusAddWorkerMessage
from ._pipecat_messages import BusFlushProgressMessage as BusFlushProgressMessage
from ._pipecat_messages import BusFrameMessage as BusFrameMessage
from ._pipecat_messages import BusTTSSpeakMessage as BusTTSSpeakMessage
from ._pipecat_messages import BusWorkerRegistryMessage as BusWorkerRegistryMessage
from ._pipecat_messages import FrameDirection as FrameDirection
from ._pipecat_messages import PipecatFrame as PipecatFrame
from ._pipecat_messages import WorkerRegistryEntry as WorkerRegistryEntry
from ._pipecat_wire import PipecatWireCodec as PipecatWireCodec
from ._pipecat_wire import pipecat_registry as pipecat_registry
from ._portal import BusPortal as BusPortal
from ._portal import open_thread_portal as open_thread_portal
from ._presence import wait_for_worker as wait_for_worker
from ._presence import worker_directory as worker_directory
from ._serializers import JSONSerializer as JSONSerializer
from ._serializers import MsgpackSerializer as MsgpackSerializer
from ._serializers import Serializer as Serializer
from ._statistics import BusStatistics as BusStatistics
from ._statistics import OverflowPolicy as OverflowPolicy
from ._statistics import SubscriptionStatistics as SubscriptionStatistics
from ._statistics import Undelivered as Undelivered
from ._subscriber import BusLike as BusLike
from ._subscriber import BusSubscriber as BusSubscriber
from ._transport import DeliveryMark as DeliveryMark
from ._transport import MemoryTransport as MemoryTransport
from ._transport import Transport as Transport
from ._transport import TransportHost as TransportHost
from ._version import __version__ as __version__
from ._wire import Envelope as Envelope
from ._wire import RejectionCounter as RejectionCounter
from ._wire import WireCodec as WireCodec

__all__ = [
    "AnybusError",
    "BusActivateWorkerMessage",
    "BusAddWorkerMessage",
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusDataMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusFlushProgressMessage",
    "BusFrameMessage",
    "BusJobCancelMessage",
    "BusJobRequestMessage",
    "BusJobResponseMessage",
    "BusJobResponseUrgentMessage",
    "BusJobStreamDataMessage",
    "BusJobStreamEndMessage",
    "BusJobStreamStartMessage",
    "BusJobUpdateMessage",
    "BusJobUpdateRequestMessage",
    "BusJobUpdateUrgentMessage",
    "BusLike",
    "BusLocalMessage",
    "BusMessage",
    "BusOverflowError",
    "BusPortal",
    "BusStateError",
    "BusStatistics",
    "BusSubscriber",
    "BusSystemMessage",
    "BusTTSSpeakMessage",
    "BusWorkerErrorMessage",
    "BusWorkerGoodbyeMessage",
    "BusWorkerLocalErrorMessage",
    "BusWorkerPresenceMessage",
    "BusWorkerPresenceQueryMessage",
    "BusWorkerReadyMessage",
    "BusWorkerRegistryMessage",
    "Codec",
    "DeliveryMark",
    "Envelope",
    "FrameDirection",
    "FunctionSubscriber",
    "JSONSerializer",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobHandler",
    "JobResult",
    "JobStatus",
    "JobTimeout",
    "JobWorker",
    "MemoryBus",
    "MemoryTransport",
    "MessageRegistry",
    "MessageRejected",
    "MessageStream",
    "MsgpackSerializer",
    "OverflowPolicy",
    "PipecatFrame",
    "PipecatWireCodec",
    "RejectionCounter",
    "SerializationError",
    "Serializer",
    "SubscriptionStatistics",
    "Transport",
    "TransportError",
    "TransportHost",
    "TypeAdapter",
    "Undelivered",
    "WireCodec",
    "WorkerBus",
    "WorkerChange",
    "WorkerDirectory",
    "WorkerEvent",
    "WorkerInfo",
    "WorkerRegistryEntry",
    "WorkerUnavailable",
    "__version__",
    "current_bus",
    "default_registry",
    "job_handler",
    "open_job",
    "open_thread_portal",
    "pipecat_registry",
    "register_adapter",
    "register_message",
    "request",
    "wait_for_worker",
    "worker_directory",
]

# Show public names as anybus.X in tracebacks, reprs and docs, not as anybus._module.X.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("anybus._"):
        _obj.__module__ = __name__
del _name, _obj
