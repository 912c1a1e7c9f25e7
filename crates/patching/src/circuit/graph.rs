//! The computational graph that edge attribution patching scores, as EAP (Syed et al. 2023),
//! EAP-IG (Hanna et al. 2024) and TransformerLens 4.x's `enumerate_edges` define it.
//!
//! - *Writers* add to the residual stream: the input (token plus positional embedding), every
//!   attention head (its `z W_O[h]`, without the layer's output bias, which belongs to no head)
//!   and every MLP (with its biases).
//! - *Readers* take the residual stream in: each head's query, key and value inputs separately
//!   (three readers a head), each MLP's input, and the logits (the final residual stream, before
//!   `ln_f`).
//! - An *edge* joins every writer to every reader after it: a head of layer l reads the input,
//!   the heads and MLPs of layers before l; the MLP of layer l reads those and the heads of
//!   layer l; the logits read every writer.
//!
//! A reader's input is the sum of its writers' outputs (and of the biases no node owns), so an
//! edge can be cut exactly: its writer's contribution to that one reader is replaced.
//!
//! Nodes and edges are named as in the EAP-IG library: `input`, `a1.h3`, `m0`, `logits`;
//! readers `a1.h3<q>`, `a1.h3<k>`, `a1.h3<v>`, `m0`, `logits`; an edge `a0.h1->a2.h3<v>`.
//! TransformerLens 4.x's graph has the same nodes and edges at every position separately
//! (`Node(kind, position, layer, head)`); an edge here is the sum of its edges over positions.

use serde::Serialize;

/// A node that writes into the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Writer {
    /// The token plus positional embedding.
    Input,
    Head {
        layer: usize,
        head: usize,
    },
    Mlp {
        layer: usize,
    },
}

/// Which input of a head an edge feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Qkv {
    Q,
    K,
    V,
}

impl Qkv {
    /// The three, in the order of the graph's readers.
    pub const ALL: [Qkv; 3] = [Qkv::Q, Qkv::K, Qkv::V];

    fn letter(self) -> &'static str {
        match self {
            Qkv::Q => "q",
            Qkv::K => "k",
            Qkv::V => "v",
        }
    }
}

/// A node input that reads the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reader {
    Head { layer: usize, head: usize, input: Qkv },
    Mlp { layer: usize },
    Logits,
}

/// One edge: `writer` into `reader`, by their indices in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    pub writer: usize,
    pub reader: usize,
}

/// The graph of a model with `n_layer` layers of `n_head` heads.
///
/// Writers are numbered input first, then layer by layer its heads and its MLP; readers layer
/// by layer the queries of every head, the keys, the values and the MLP, then the logits. Edges
/// are numbered reader by reader, each reader's writers in order, as TransformerLens enumerates
/// them.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub n_layer: usize,
    pub n_head: usize,
    pub edges: Vec<Edge>,
    /// `[reader][writer]`: the edge's index, if the writer comes before the reader.
    index: Vec<Vec<Option<usize>>>,
}

impl Graph {
    pub fn new(n_layer: usize, n_head: usize) -> Self {
        let mut graph = Graph {
            n_layer,
            n_head,
            edges: Vec::new(),
            index: Vec::new(),
        };
        let n_writers = graph.writers();
        for reader in 0..graph.readers() {
            let upstream = graph.upstream(reader);
            let mut row = vec![None; n_writers];
            for (writer, slot) in row.iter_mut().enumerate().take(upstream) {
                *slot = Some(graph.edges.len());
                graph.edges.push(Edge { writer, reader });
            }
            graph.index.push(row);
        }
        graph
    }

    /// How many writers: the input, every head, every MLP.
    pub fn writers(&self) -> usize {
        1 + self.n_layer * (self.n_head + 1)
    }

    /// How many readers: three per head, one per MLP, the logits.
    pub fn readers(&self) -> usize {
        self.n_layer * (3 * self.n_head + 1) + 1
    }

    /// The first writer of layer `layer` (its head 0); `writers()` for `n_layer`.
    pub fn layer_start(&self, layer: usize) -> usize {
        1 + layer * (self.n_head + 1)
    }

    /// The writer index of head `head` of layer `layer`.
    pub fn head_writer(&self, layer: usize, head: usize) -> usize {
        self.layer_start(layer) + head
    }

    /// The writer index of the MLP of layer `layer`.
    pub fn mlp_writer(&self, layer: usize) -> usize {
        self.layer_start(layer) + self.n_head
    }

    /// The first reader of layer `layer`: the query input of its head 0.
    pub fn reader_start(&self, layer: usize) -> usize {
        layer * (3 * self.n_head + 1)
    }

    /// The reader index of the `input` of head `head` of layer `layer`.
    pub fn head_reader(&self, layer: usize, head: usize, input: Qkv) -> usize {
        let k = Qkv::ALL.iter().position(|&q| q == input).expect("one of three");
        self.reader_start(layer) + k * self.n_head + head
    }

    /// The reader index of the input of the MLP of layer `layer`.
    pub fn mlp_reader(&self, layer: usize) -> usize {
        self.reader_start(layer) + 3 * self.n_head
    }

    /// The reader index of the logits.
    pub fn logits_reader(&self) -> usize {
        self.reader_start(self.n_layer)
    }

    /// How many writers come before `reader`: its edges are from writers `0..upstream`.
    pub fn upstream(&self, reader: usize) -> usize {
        match self.reader(reader) {
            Reader::Head { layer, .. } => self.layer_start(layer),
            Reader::Mlp { layer } => self.mlp_writer(layer),
            Reader::Logits => self.writers(),
        }
    }

    pub fn writer(&self, index: usize) -> Writer {
        if index == 0 {
            return Writer::Input;
        }
        let (layer, k) = ((index - 1) / (self.n_head + 1), (index - 1) % (self.n_head + 1));
        if k == self.n_head {
            Writer::Mlp { layer }
        } else {
            Writer::Head { layer, head: k }
        }
    }

    pub fn reader(&self, index: usize) -> Reader {
        let per_layer = 3 * self.n_head + 1;
        let (layer, k) = (index / per_layer, index % per_layer);
        if layer == self.n_layer {
            Reader::Logits
        } else if k == 3 * self.n_head {
            Reader::Mlp { layer }
        } else {
            Reader::Head {
                layer,
                head: k % self.n_head,
                input: Qkv::ALL[k / self.n_head],
            }
        }
    }

    /// The edge from `writer` into `reader`, if there is one.
    pub fn edge(&self, writer: usize, reader: usize) -> Option<usize> {
        self.index.get(reader)?.get(writer).copied().flatten()
    }

    /// A writer's name: `input`, `a1.h3`, `m0`.
    pub fn writer_name(&self, index: usize) -> String {
        match self.writer(index) {
            Writer::Input => "input".into(),
            Writer::Head { layer, head } => format!("a{layer}.h{head}"),
            Writer::Mlp { layer } => format!("m{layer}"),
        }
    }

    /// A reader's name: `a1.h3<q>`, `m0`, `logits`.
    pub fn reader_name(&self, index: usize) -> String {
        match self.reader(index) {
            Reader::Head { layer, head, input } => format!("a{layer}.h{head}<{}>", input.letter()),
            Reader::Mlp { layer } => format!("m{layer}"),
            Reader::Logits => "logits".into(),
        }
    }

    /// An edge's name: `a0.h1->a2.h3<v>`.
    pub fn edge_name(&self, edge: usize) -> String {
        let e = self.edges[edge];
        format!("{}->{}", self.writer_name(e.writer), self.reader_name(e.reader))
    }

    /// The edge named `name`, as [`Graph::edge_name`] writes it.
    pub fn find(&self, name: &str) -> Option<usize> {
        let (writer, reader) = name.split_once("->")?;
        let w = (0..self.writers()).find(|&w| self.writer_name(w) == writer)?;
        let r = (0..self.readers()).find(|&r| self.reader_name(r) == reader)?;
        self.edge(w, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_eap_ig_library_and_transformer_lens() {
        // GPT-2 small: 32,491 edges in the EAP-IG library's graph.
        assert_eq!(Graph::new(12, 12).edges.len(), 32_491);
        // The fixture model (3 layers of 4 heads): 262 edges, TransformerLens's 3,930 over 15
        // positions.
        assert_eq!(Graph::new(3, 4).edges.len(), 262);
    }

    #[test]
    fn indices_and_names_round_trip() {
        let g = Graph::new(2, 3);
        for (i, e) in g.edges.iter().enumerate() {
            assert_eq!(g.edge(e.writer, e.reader), Some(i));
            assert_eq!(g.find(&g.edge_name(i)), Some(i));
        }
        assert_eq!(g.writer(g.head_writer(1, 2)), Writer::Head { layer: 1, head: 2 });
        assert_eq!(g.writer(g.mlp_writer(0)), Writer::Mlp { layer: 0 });
        assert_eq!(
            g.reader(g.head_reader(1, 0, Qkv::V)),
            Reader::Head {
                layer: 1,
                head: 0,
                input: Qkv::V
            }
        );
        assert_eq!(g.reader(g.logits_reader()), Reader::Logits);
        // A head reads no head of its own layer; an MLP reads them all.
        assert_eq!(g.edge(g.head_writer(0, 0), g.head_reader(0, 1, Qkv::Q)), None);
        assert!(g.edge(g.head_writer(0, 2), g.mlp_reader(0)).is_some());
        assert_eq!(g.edge(g.mlp_writer(0), g.mlp_reader(0)), None);
        assert_eq!(g.edge_name(0), "input->a0.h0<q>");
    }
}
