//! Checking a circuit by other means than patching, as circuit papers do: how well the model
//! does the task at all ([`accuracy`]), what ablating heads leaves of it ([`ablation`]), and
//! where heads attend ([`attention`]).

pub mod ablation;
pub mod accuracy;
pub mod attention;
