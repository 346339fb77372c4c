//! Assignment problems: the exact linear sum assignment (Hungarian / Jonker–Volgenant shortest
//! augmenting paths), used by the disentanglement metrics (MCC) and as the reference, and
//! Bertsekas' ε-scaling auction, the fast approximate solver of the point-cloud likelihoods
//! (dense costs or squared distances computed on the fly, batched; the CPU twin of
//! `kernels/auction.cu`).
//!
//! | file | what it holds |
//! |---|---|
//! | [`hungarian`] | exact rectangular [`linear_sum_assignment`], as scipy's (the reference) |
//! | [`auction`](mod@auction) | forward auction with ε-scaling, warm start, Gauss–Seidel or Jacobi bidding: cost ≤ optimum + m·ε |
//! | `price_tree` | kd-partition of the columns into leaves with their boxes and price minima: the auction's branch-and-bound bid search for point costs |

pub mod auction;
pub mod hungarian;
mod price_tree;

pub use auction::{
    auction, auction_points, auction_points_batch, AuctionParams, AuctionResult, AuctionState,
    Bidding,
};
pub use hungarian::{linear_sum_assignment, Assignment};
