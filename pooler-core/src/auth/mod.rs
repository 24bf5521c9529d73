//! Client and backend authentication.
