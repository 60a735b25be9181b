//! Backends other than the native launch path. The lifecycle verbs ask here
//! first; a spec or a container that is not for another backend falls
//! through to the native engine.

pub mod gvisor;
