//! Reading results: the results themselves and how they are shown ([`results`]), how a dataset
//! becomes one grid ([`aggregate`]) and how sure each cell is ([`uncertainty`]), statistics of
//! grids ([`stats`]), which cells stand out ([`detect`]), how the methods' answers differ
//! ([`sensitivity`]) and how stable each answer is across seeds ([`stability`]), whether a
//! rerun reproduced ([`reproduce`]), and the circuits already known to read them against
//! ([`known_circuits`]).

pub mod aggregate;
pub mod detect;
pub mod known_circuits;
pub mod reproduce;
pub mod results;
pub mod sensitivity;
pub mod stability;
pub mod stats;
pub mod uncertainty;
