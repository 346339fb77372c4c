//! Subcommands of the `cryofield` binary.
