"""The ONE place where domain errors become gRPC status codes. Servicers raise; they never set codes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import grpc.aio

from mesh.errors import FailedPrecondition, InvalidArgument, MeshError, NotFound, PermissionDenied, Unavailable

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error"
"""All a caller learns about an unexpected exception; the details go to the server log."""

STATUS_CODES: tuple[tuple[type[MeshError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-visible message for an exception raised by a servicer."""
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            return code, str(error) or code.name
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns exceptions escaping a servicer into ``context.abort(code, message)``."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap(handler, handler_call_details.method)


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    codecs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, method), **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, method), **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, method), **codecs)
    return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, method), **codecs)


def _unary(behavior: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result
        except grpc.aio.AbortError:
            raise  # the call was already given a status
        except Exception as error:
            await _abort(context, error, method)

    return guarded


def _streaming(behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            elif inspect.isawaitable(result):
                await result  # a servicer that writes with context.write()
            else:
                for response in result:
                    yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return guarded


async def _abort(context: grpc.aio.ServicerContext, error: Exception, method: str) -> NoReturn:
    code, message = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in %s", method, exc_info=error)
    else:
        log.info("%s -> %s: %s", method, code.name, message)
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it always raises; this keeps NoReturn honest
