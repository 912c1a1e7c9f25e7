//! What circuit discovery gives: the graph's nodes, every edge with its attribution score
//! (best first), its exact effect where it was checked and whether the circuit keeps it; the
//! clean and corrupted metrics; the circuit's exact check; the faithfulness curve; and the
//! edges where attribution and exact patching disagree most. `circuit.json` is this, as JSON;
//! the CSVs are its edges and its curve.

use serde::Serialize;

use crate::ExperimentSpec;
use crate::circuit::graph::{Graph, Qkv, Reader, Writer};

/// A node of the graph, for drawing: `input`, `a1.h3`, `m0`, `logits`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// `input`, `head`, `mlp` or `logits`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<usize>,
}

impl NodeInfo {
    /// Every node of `graph`: the writers in order, then the logits.
    pub fn all(graph: &Graph) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = (0..graph.writers())
            .map(|w| {
                let (kind, layer, head) = match graph.writer(w) {
                    Writer::Input => ("input", None, None),
                    Writer::Head { layer, head } => ("head", Some(layer), Some(head)),
                    Writer::Mlp { layer } => ("mlp", Some(layer), None),
                };
                NodeInfo {
                    name: graph.writer_name(w),
                    kind,
                    layer,
                    head,
                }
            })
            .collect();
        nodes.push(NodeInfo {
            name: "logits".into(),
            kind: "logits",
            layer: None,
            head: None,
        });
        nodes
    }
}

/// One edge and what is known of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeScore {
    /// `a0.h1->a2.h3<v>`.
    pub name: String,
    /// The writer node.
    pub from: String,
    /// The reading node (a head, an MLP, the logits).
    pub to: String,
    /// Which input of `to` it feeds: `q`, `k`, `v`, `mlp` or `logits`.
    pub input: &'static str,
    /// 1 for the largest |score|.
    pub rank: usize,
    /// The attributed effect on M, averaged over prompts.
    pub score: f64,
    /// The exact effect of patching this edge alone, when it was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<f64>,
    pub in_circuit: bool,
}

impl EdgeScore {
    pub fn of(
        graph: &Graph,
        edge: usize,
        rank: usize,
        score: f64,
        in_circuit: bool,
        exact: Option<f64>,
    ) -> Self {
        let e = graph.edges[edge];
        let (to, input) = match graph.reader(e.reader) {
            Reader::Head { layer, head, input } => (
                format!("a{layer}.h{head}"),
                match input {
                    Qkv::Q => "q",
                    Qkv::K => "k",
                    Qkv::V => "v",
                },
            ),
            Reader::Mlp { layer } => (format!("m{layer}"), "mlp"),
            Reader::Logits => ("logits".into(), "logits"),
        };
        EdgeScore {
            name: graph.edge_name(edge),
            from: graph.writer_name(e.writer),
            to,
            input,
            rank,
            score,
            exact,
            in_circuit,
        }
    }
}

impl EdgeScore {
    /// What the edge connects and what is known of it, in words: `a0.h1 → a2.h3 (its value
    /// input): score 1.2345e-1, exact effect 1.0123e-1 (rank 3, in the circuit)`.
    pub fn describe(&self) -> String {
        let input = match self.input {
            "q" => " (its query input)",
            "k" => " (its key input)",
            "v" => " (its value input)",
            _ => "",
        };
        let exact = match self.exact {
            Some(x) => format!("exact effect {x:.4e}"),
            None => "exact effect not checked".into(),
        };
        let kept = if self.in_circuit {
            "in the circuit"
        } else {
            "not in the circuit"
        };
        format!(
            "{} → {}{input}: score {:.4e}, {exact} (rank {}, {kept})",
            self.from, self.to, self.score, self.rank
        )
    }
}

/// The circuit run by exact patching.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CircuitCheck {
    /// Edges kept.
    pub edges: usize,
    /// Mean M of the clean run with every other edge cut to its corrupted value.
    pub metric: f64,
    /// That M normalized: 1 is the clean run, 0 the corrupted run.
    pub faithfulness: f64,
}

/// The top `edges` edges run by exact patching.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub edges: usize,
    pub metric: f64,
    pub faithfulness: f64,
}

/// An edge whose attribution and exact effect differ.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disagreement {
    pub edge: String,
    pub attribution: f64,
    pub exact: f64,
    /// attribution − exact.
    pub difference: f64,
}

/// Everything `patchbay circuit` writes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CircuitResults {
    /// The spec as given.
    pub spec: ExperimentSpec,
    /// `eap` or `eap_ig`.
    pub method: String,
    /// Gradient points per prompt (1 for EAP).
    pub steps: usize,
    pub direction: String,
    pub metric: String,
    pub prompts: usize,
    pub nodes: Vec<NodeInfo>,
    /// Every edge, by decreasing |score|.
    pub edges: Vec<EdgeScore>,
    /// Mean M of the clean and the corrupted runs.
    pub clean_metric: f64,
    pub corrupted_metric: f64,
    pub circuit: CircuitCheck,
    /// Faithfulness of the top k edges, k on a log grid from 0 to every edge.
    pub curve: Vec<CurvePoint>,
    /// The checked edges of largest |attribution − exact|, largest first.
    pub disagreements: Vec<Disagreement>,
}

fn number(v: f64) -> String {
    format!("{v}")
}

impl Disagreement {
    /// `a0.h1->a2.h3<v>: attribution 1.2345e-1, exact 1.0123e-1, difference 2.2220e-2`.
    pub fn describe(&self) -> String {
        format!(
            "{}: attribution {:.4e}, exact {:.4e}, difference {:.4e}",
            self.edge, self.attribution, self.exact, self.difference
        )
    }
}

impl CircuitResults {
    /// The faithfulness of the top `k` edges where exact patching measured it: the circuit's,
    /// or a point of the curve.
    pub fn faithfulness_at(&self, k: usize) -> Option<f64> {
        if k == self.circuit.edges {
            return Some(self.circuit.faithfulness);
        }
        self.curve.iter().find(|p| p.edges == k).map(|p| p.faithfulness)
    }

    /// Every edge as CSV: `rank,edge,from,to,input,score,exact,in_circuit`.
    pub fn edges_csv(&self) -> String {
        let mut out = String::from("rank,edge,from,to,input,score,exact,in_circuit\n");
        for e in &self.edges {
            out += &format!(
                "{},{},{},{},{},{},{},{}\n",
                e.rank,
                e.name,
                e.from,
                e.to,
                e.input,
                number(e.score),
                e.exact.map(number).unwrap_or_default(),
                e.in_circuit
            );
        }
        out
    }

    /// The faithfulness curve as CSV: `edges,metric,faithfulness`.
    pub fn curve_csv(&self) -> String {
        let mut out = String::from("edges,metric,faithfulness\n");
        for p in &self.curve {
            out += &format!("{},{},{}\n", p.edges, number(p.metric), number(p.faithfulness));
        }
        out
    }
}
