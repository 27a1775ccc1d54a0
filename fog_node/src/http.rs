//! The HTTP layer: the node's routes, the data plane that serves `/function/…`, who sent an
//! invocation, the JSON views, and in-process link emulation as a middleware.

pub mod caller;
pub mod dataplane;
pub mod emulation;
pub mod offload_view;
pub mod routes;
