//! Page-tiering messages (kinds 0x30xx): page states and epoch ends up, park and demote
//! commands down. A command names the page version it was decided on; the host refuses it if
//! the page has changed since.

use super::{ParseError, le};

/// A page's place, as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TierPlace {
    /// In DRAM, in use.
    Resident = 1,
    /// In DRAM, parked on probation.
    Parked = 2,
    /// In the compressed tier.
    Compressed = 3,
    /// Holding nothing: never touched, or given back (by an allocator's free).
    Free = 4,
}

/// Every page-tiering message (the `Message::Tier` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierMessage {
    /// Event 0x3001: the app's arena has `pages` pages.
    Attach {
        /// Pages.
        pages: u32,
    },
    /// Event 0x3002: page `page` is at `version`, in `place`; `touched`: it was touched while
    /// parked since the last report.
    Page {
        /// The page.
        page: u32,
        /// Its version.
        version: u32,
        /// Where it is.
        place: TierPlace,
        /// Touched while parked.
        touched: bool,
    },
    /// Event 0x3003: the epoch ended; `promotions` pages came back from the compressed tier
    /// during it.
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
    pub(super) const PAGE: u16 = 0x3002;
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
            TierMessage::Page { .. } => kind::PAGE,
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
            kind::PAGE => {
                tail(p, 10)?;
                let place = match p[8] {
                    1 => TierPlace::Resident,
                    2 => TierPlace::Parked,
                    3 => TierPlace::Compressed,
                    4 => TierPlace::Free,
                    _ => return Err(ParseError::Field("place")),
                };
                let touched = match p[9] {
                    0 => false,
                    1 => true,
                    _ => return Err(ParseError::Field("touched")),
                };
                TierMessage::Page {
                    page: le::u32_at(p, 0),
                    version: le::u32_at(p, 4),
                    place,
                    touched,
                }
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
            TierMessage::Page { page, version, place, touched } => {
                le::put_u32(p, 0, page);
                le::put_u32(p, 4, version);
                p[8] = place as u8;
                p[9] = u8::from(touched);
            }
            TierMessage::Epoch { promotions } => le::put_u64(p, 0, promotions),
            TierMessage::Park { page, version } | TierMessage::Demote { page, version } => {
                le::put_u32(p, 0, page);
                le::put_u32(p, 4, version);
            }
        }
    }
}
