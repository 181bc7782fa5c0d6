//! Throwaway local PostgreSQL server. PLACEHOLDER: being written.
