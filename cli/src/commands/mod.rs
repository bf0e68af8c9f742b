//! One module per command: each wires the libraries to the command line and prints the result.

pub mod copy;
pub mod producer;
pub mod run;
pub mod sort;
pub mod status;
pub mod validate;
pub mod worker;
