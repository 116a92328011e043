//! Write-ahead log segments. To be written.
