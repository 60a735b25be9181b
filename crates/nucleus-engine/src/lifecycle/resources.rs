//! Resource verbs on a live container: pause, resume, update, events, ps.
