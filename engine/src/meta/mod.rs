//! The metadata log. To be written.
