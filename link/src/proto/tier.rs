//! Page-tiering messages (kinds 0x30xx): the arena's size and epoch ends up, park and demote
//! commands down. Page states are not sent as records: the policy reads them from the
//! host's page-state table (`crate::tier_table`), shared at the handshake, once per epoch
//! end. A command names the page version it was decided on; the host refuses it if the page
//! has changed since.

use super::{ParseError, le};

/// Every page-tiering message (the `Message::Tier` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierMessage {
    /// Event 0x3001: the app's arena has `pages` pages (its shared table must say so too).
    Attach {
        /// Pages.
        pages: u32,
    },
    /// Event 0x3003: the epoch ended (the page-state table is ready to be read, and the
    /// last epoch's commands were applied); `promotions` pages came back from the compressed
    /// tier during it.
    Epoch {
        /// Promotions during the epoch.
        promotions: u64,
    },
    /// Decision 0x3081: park `page`, if it is still at `version`.
    Park {
        /// The page.
        page: u32,
        /// The version decided on.
        version: u32,
    },
    /// Decision 0x3082: demote `page`, if it is still at `version`.
    Demote {
        /// The page.
        page: u32,
        /// The version decided on.
        version: u32,
    },
}

mod kind {
    pub(super) const ATTACH: u16 = 0x3001;
    pub(super) const EPOCH: u16 = 0x3003;
    pub(super) const PARK: u16 = 0x3081;
    pub(super) const DEMOTE: u16 = 0x3082;
}

fn tail(p: &[u8], from: usize) -> Result<(), ParseError> {
    if le::zero(p, from..p.len()) { Ok(()) } else { Err(ParseError::Reserved) }
}

impl TierMessage {
    pub(super) fn kind_u16(&self) -> u16 {
        match self {
            TierMessage::Attach { .. } => kind::ATTACH,
            TierMessage::Epoch { .. } => kind::EPOCH,
            TierMessage::Park { .. } => kind::PARK,
            TierMessage::Demote { .. } => kind::DEMOTE,
        }
    }

    pub(super) fn parse_payload(kind_value: u16, p: &[u8]) -> Result<TierMessage, ParseError> {
        Ok(match kind_value {
            kind::ATTACH => {
                tail(p, 4)?;
                TierMessage::Attach { pages: le::u32_at(p, 0) }
            }
            kind::EPOCH => {
                tail(p, 8)?;
                TierMessage::Epoch { promotions: le::u64_at(p, 0) }
            }
            kind::PARK | kind::DEMOTE => {
                tail(p, 8)?;
                let (page, version) = (le::u32_at(p, 0), le::u32_at(p, 4));
                if kind_value == kind::PARK {
                    TierMessage::Park { page, version }
                } else {
                    TierMessage::Demote { page, version }
                }
            }
            other => return Err(ParseError::UnknownKind(other)),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        match *self {
            TierMessage::Attach { pages } => le::put_u32(p, 0, pages),
            TierMessage::Epoch { promotions } => le::put_u64(p, 0, promotions),
            TierMessage::Park { page, version } | TierMessage::Demote { page, version } => {
                le::put_u32(p, 0, page);
                le::put_u32(p, 4, version);
            }
        }
    }
}
