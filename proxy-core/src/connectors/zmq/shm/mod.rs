//! Same-host shared memory for the peer connector: large objects of a peer live in
//! pre-faulted shared memory, and a reader on the same machine maps them instead of
//! receiving their bytes over TCP.
//!
//! - `sys`: memory files, mappings, `/proc/PID/fd` (Linux; elsewhere everything reports
//!   unsupported and the connector stays on TCP);
//! - `layout`: a segment's header and slot table, shared by owner and readers;
//! - `arena`: the owner's segments and slots (copy in once, recycle, never map per object);
//! - `descriptor`: what a `GET` reply carries instead of the bytes;
//! - `mapping`: the reader's cached mappings and pinned slots.
//!
//! Why an arena: a page fault costs about 3 us per 4 KiB page on the VMs this project is
//! measured on, so a segment made and mapped per object moves only about 1.2 GB/s (slower
//! than loopback TCP), while copies into memory mapped once and reused move 9 to 10 GB/s.

mod arena;
mod descriptor;
mod layout;
mod mapping;
mod sys;

pub(crate) use arena::{Arena, ArenaStats, Pool, Reservation};
pub(crate) use descriptor::Descriptor;
#[cfg(test)]
pub(crate) use mapping::{holder_descriptor, spawn_segment_holder};
pub(crate) use mapping::{is_unusable, mark_unusable, read, Miss, Wanted};
