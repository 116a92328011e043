//! Spaces: MessagePack tuples with typed primary and secondary indexes (vinyl's data model).
//!
//! Work in progress: the pure building blocks (typed key encoding, tuple validation, update
//! operations) come first; the `Db` integration follows.
#![allow(dead_code)]
