//! The database schema: one set of migrations (`migrations/`) for SQLite and PostgreSQL alike,
//! applied at connection, after the checksums recorded from earlier texts of the same
//! migrations are brought up to date.
//!
//! sqlx records the SHA-384 of each migration's text when it applies it and refuses to open a
//! database whose recorded checksum differs from the embedded text. The texts once differed
//! per engine (only in their comments) and some comments have changed since, without any
//! change to the SQL: [`EARLIER_TEXTS`] lists the checksums of those earlier texts, and
//! [`migrate`] rewrites a recorded checksum to the current one only where it equals one of
//! them. Any other mismatch still stops the start, as it should.

use sqlx::AnyPool;
use sqlx::migrate::{Migrate, MigrateError, Migrator};

/// The migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Where sqlx records the applied migrations (its default, which [`MIGRATOR`] keeps).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The checksums (SHA-384, hex) that databases recorded for an earlier text of a migration
/// whose SQL is unchanged: one per engine, as each engine had its own copy.
#[derive(Debug, Clone, Copy)]
pub struct EarlierText {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration whose text changed after databases were created with it.
pub const EARLIER_TEXTS: &[EarlierText] = &[
    EarlierText {
        version: 1,
        sqlite: "42674cd758c98b44533be1ec34288f5b3843ea8c20b74f9cf90471b7d0df3f931a3f8fed2ba70392eee86bf8bbf4ace3",
        postgres: "2f910ff5a8c6a109227954817d833b0afc5d4fab3dbbbedf79ea490834608bfdf59f8db50ebdb5fc909f5f4d1a344cb7",
    },
    EarlierText {
        version: 2,
        sqlite: "83fc785bc8e7190cb92222e9949512146b5830e37a331e0fbf207ccf63c49e280f1672d774852dbed42a815e9ef44438",
        postgres: "83fc785bc8e7190cb92222e9949512146b5830e37a331e0fbf207ccf63c49e280f1672d774852dbed42a815e9ef44438",
    },
    EarlierText {
        version: 3,
        sqlite: "1fdd025c9811bbe90cdf5b871c4f0bcc2353e1bb1803245908fe73fb5f93254c0ead60d85bed6014e58f035534c81356",
        postgres: "1fdd025c9811bbe90cdf5b871c4f0bcc2353e1bb1803245908fe73fb5f93254c0ead60d85bed6014e58f035534c81356",
    },
    EarlierText {
        version: 5,
        sqlite: "329b80568e0890dc116d11122cd5ed1683b62463628a5e2c33cfd1ff987af38f6360786d031fe6a7e199bd500aaee184",
        postgres: "39d694ae329577e3d30dca734f1c42dd20585af47094fd64c324b91e6d1b3bf475917c4f1cebe710d37135cfb69742fc",
    },
];

/// Brings checksums recorded from earlier texts up to date, then applies the migrations.
pub async fn migrate(pool: &AnyPool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    // Under the migrator's own lock (PostgreSQL: an advisory lock; SQLite: none needed), so
    // concurrent starts do not race to create the migrations table.
    conn.lock().await?;
    let repaired = repair_checksums(&mut conn).await;
    conn.unlock().await?;
    let repaired = repaired?;
    if repaired > 0 {
        tracing::info!(
            migrations = repaired,
            "recorded checksums of earlier migration texts updated"
        );
    }
    drop(conn);
    MIGRATOR.run(pool).await
}

/// Rewrites each recorded checksum that equals an earlier text's to the current text's;
/// returns how many rows changed.
async fn repair_checksums(conn: &mut sqlx::AnyConnection) -> Result<u64, MigrateError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let mut repaired = 0;
    for earlier in EARLIER_TEXTS {
        let Some(current) = MIGRATOR.iter().find(|m| m.version == earlier.version) else {
            continue;
        };
        let mut olds = vec![earlier.sqlite];
        if earlier.postgres != earlier.sqlite {
            olds.push(earlier.postgres);
        }
        for old in olds {
            let old = hex::decode(old).map_err(|e| {
                MigrateError::Source(format!("earlier checksum of {}: {e}", earlier.version).into())
            })?;
            repaired += sqlx::query(
                "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3",
            )
            .bind(current.checksum.to_vec())
            .bind(earlier.version)
            .bind(old)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrator_records_in_the_table_that_is_repaired() {
        assert_eq!(MIGRATOR.table_name, MIGRATIONS_TABLE);
    }

    #[test]
    fn every_earlier_text_is_a_migration_whose_text_has_changed() {
        for earlier in EARLIER_TEXTS {
            let current = MIGRATOR
                .iter()
                .find(|m| m.version == earlier.version)
                .map(|m| hex::encode(&m.checksum));
            assert!(current.is_some(), "no migration {}", earlier.version);
            for old in [earlier.sqlite, earlier.postgres] {
                assert_eq!(old.len(), 96, "SHA-384 in hex");
                assert_ne!(current.as_deref(), Some(old), "version {}", earlier.version);
            }
        }
    }

    #[test]
    fn the_migrations_carry_no_development_process_wording() {
        for m in MIGRATOR.iter() {
            let sql = m.sql.as_str();
            for word in ["Issue ", "issue #", "TODO", "keep in step"] {
                assert!(!sql.contains(word), "{} says {word:?}", m.version);
            }
        }
    }
}
