//! In-memory file system with crash simulation and fault injection (for tests). To be written.

/// Placeholder.
#[derive(Debug, Default)]
pub struct MemFs;

/// Placeholder.
#[derive(Debug, Clone, Copy)]
pub enum FaultKind {}
