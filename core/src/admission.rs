//! Who may open a session: the rule every adapter applies to a connection
//! before a [`Session`](crate::Session) exists for it.
//!
//! The adapter finds out the peer's uid (`SO_PEERCRED` on a UNIX socket)
//! and how many sessions it serves; [`admit`] says yes or gives the
//! [`Refusal`] to write before closing.

use std::fmt;

use crate::config::Limits;

/// Why a connection is turned away before a session starts. The adapter
/// writes [`Refusal::message`] and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sessions` sessions are already open.
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The peer runs as a user who may not inspect this process.
    NotAllowed {
        /// The peer's effective uid.
        peer_uid: u32,
        /// The host's effective uid.
        host_uid: u32,
    },
    /// The peer's identity could not be established (its credentials could
    /// not be read); ispyd fails closed.
    UnknownPeer,
}

impl Refusal {
    /// The line to send, in text form (which the `ispy` client shows as is).
    pub fn message(&self) -> String {
        format!("*** ispyd: {self}\n")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManySessions { limit } => write!(
                f,
                "already serving {limit} sessions (max_sessions = {limit}); try again when one \
                 ends."
            ),
            Refusal::NotAllowed {
                peer_uid,
                host_uid: 0,
            } => write!(
                f,
                "uid {peer_uid} may not inspect this process; only root may."
            ),
            Refusal::NotAllowed { peer_uid, host_uid } => write!(
                f,
                "uid {peer_uid} may not inspect this process; only uid {host_uid} (its owner) \
                 and root may."
            ),
            Refusal::UnknownPeer => write!(
                f,
                "could not tell who is connecting (peer credentials unavailable); refused."
            ),
        }
    }
}

/// True when a peer running as `peer_uid` may inspect a process whose
/// effective uid is `host_uid`: the same user, or root.
///
/// Root is let in because it can read the process's memory anyway; refusing
/// it would protect nothing and only get in an administrator's way.
pub fn may_inspect(peer_uid: u32, host_uid: u32) -> bool {
    peer_uid == host_uid || peer_uid == 0
}

/// Decides whether a new connection gets a session.
///
/// `peer_uid` is what the adapter learnt of the peer: `Some(Some(uid))`
/// when the credentials were read, `Some(None)` when reading them failed,
/// `None` when the transport has none to read (TCP). `open` is the number
/// of sessions served now, not counting this one.
pub fn admit(
    peer_uid: Option<Option<u32>>,
    host_uid: u32,
    open: usize,
    limits: &Limits,
) -> Result<(), Refusal> {
    match peer_uid {
        Some(None) => return Err(Refusal::UnknownPeer),
        Some(Some(uid)) if !may_inspect(uid, host_uid) => {
            return Err(Refusal::NotAllowed {
                peer_uid: uid,
                host_uid,
            });
        }
        Some(Some(_)) | None => {}
    }
    if open >= limits.max_sessions {
        return Err(Refusal::TooManySessions {
            limit: limits.max_sessions,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_sessions: usize) -> Limits {
        Limits {
            max_sessions,
            ..Limits::default()
        }
    }

    #[test]
    fn owner_and_root_are_admitted_others_refused() {
        assert_eq!(admit(Some(Some(1000)), 1000, 0, &limits(8)), Ok(()));
        assert_eq!(admit(Some(Some(0)), 1000, 0, &limits(8)), Ok(()));
        assert_eq!(
            admit(Some(Some(1001)), 1000, 0, &limits(8)),
            Err(Refusal::NotAllowed {
                peer_uid: 1001,
                host_uid: 1000
            })
        );
    }

    #[test]
    fn unreadable_credentials_are_refused() {
        assert_eq!(
            admit(Some(None), 1000, 0, &limits(8)),
            Err(Refusal::UnknownPeer)
        );
    }

    #[test]
    fn the_session_past_max_sessions_is_refused() {
        assert_eq!(admit(None, 1000, 7, &limits(8)), Ok(()));
        assert_eq!(
            admit(None, 1000, 8, &limits(8)),
            Err(Refusal::TooManySessions { limit: 8 })
        );
    }

    #[test]
    fn refusals_name_who_may_connect() {
        let to_root = Refusal::NotAllowed {
            peer_uid: 5,
            host_uid: 0,
        };
        assert_eq!(
            to_root.message(),
            "*** ispyd: uid 5 may not inspect this process; only root may.\n"
        );
        let to_owner = Refusal::NotAllowed {
            peer_uid: 5,
            host_uid: 1000,
        };
        assert_eq!(
            to_owner.message(),
            "*** ispyd: uid 5 may not inspect this process; only uid 1000 (its owner) and root \
             may.\n"
        );
    }
}
