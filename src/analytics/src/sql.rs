//! Read-only SQL over named tables with Apache DataFusion, within a time and a memory limit.
//!
//! The caller names the tables a query reads ([`Engine::tables`]) and gives each as a
//! [`Table`]: its columns and a [`RowSource`] that produces its rows on demand. A table is
//! streamed into the query: its source runs on a blocking thread of the engine's own runtime
//! when the query scans it, in Arrow batches of [`crate::parquet_file::BATCH_ROWS`] through a
//! small bounded channel, and stops when the query needs no more (a `LIMIT`, an error, a
//! dropped [`Query`]). Nothing is kept between queries.
//!
//! Invariants:
//! - **Read-only.** Only queries run: DDL (`CREATE`, `DROP`), DML (`INSERT`, `COPY`) and
//!   statements (`SET`, `PREPARE`, ...) are refused (`SQLOptions`), so a query can neither
//!   change the engine nor write a file; there are no tables but the caller's.
//! - **Bounded.** Each query has its own memory pool of [`Limits::memory`] bytes (what
//!   DataFusion's operators hold: hash tables of aggregates and joins, sorts; spilling to disk
//!   is off, so past the limit the query fails rather than filling the disk) and ends at
//!   [`Limits::time`] after it began, with [`SqlError::TooCostly`] either way. The rows a
//!   table streams in are bounded by the channel (a few batches), not by the pool.
//! - **Blocking.** [`Engine::query`] and [`Query::next`] block their thread on the engine's
//!   runtime: call them from a plain thread (`spawn_blocking`), never from an async task.
//! - **Errors are located.** A query's fault (syntax, an unknown table or column, a type
//!   error, a cast that fails on a value) is [`SqlError::Invalid`] with the line and column
//!   DataFusion reports, when it does; a source's own failure comes back as
//!   [`SqlError::Source`], as the source gave it.

use crate::parquet_file::BATCH_ROWS;
use crate::schema::{ColumnSpec, schema};
use crate::{RecordBatch, SchemaRef, batch::BatchBuilder};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Query as SqlQuery, Statement as SqlStatement, Visit, Visitor,
};
use futures_util::StreamExt;
use serde_json::Value;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A failure of a table's source, as the source gave it.
pub type SourceError = Box<dyn StdError + Send + Sync>;

/// How many partitions a query's plan splits its work into.
const PARTITIONS: usize = 2;

/// How many batches of a table may wait between its source and the query.
const BATCHES_IN_FLIGHT: usize = 2;

/// What one query may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The bytes its operators may hold.
    pub memory: usize,
    /// How long it may run, from planning to its last batch.
    pub time: Duration,
}

/// Produces the rows of a table.
pub trait RowSource: Send + Sync {
    /// Hands each row (a cell per column, in the table's column order) to `emit`, and stops
    /// early, without error, when `emit` answers false (the query needs no more rows).
    fn produce(&self, emit: &mut dyn FnMut(&[Value]) -> bool) -> Result<(), SourceError>;
}

/// A table a query may read: its columns and where its rows come from.
#[derive(Clone)]
pub struct Table {
    pub columns: Vec<ColumnSpec>,
    pub rows: Rows,
}

/// Where a table's rows come from.
#[derive(Clone)]
pub enum Rows {
    /// Made by a source when the query scans the table.
    Made(Arc<dyn RowSource>),
    /// Already made, as record batches of the table's schema (a materialized view's).
    Held(Vec<RecordBatch>),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query is at fault: not SQL, not a query, an unknown table or column, a type error.
    #[error("{0}")]
    Invalid(String),
    /// The query went past its time or memory limit.
    #[error("{0}")]
    TooCostly(String),
    /// A table's source failed.
    #[error("{0}")]
    Source(SourceError),
    /// The engine could not be set up.
    #[error("{0}")]
    Engine(String),
}

/// The SQL engine: a runtime of its own and the limits of every query.
pub struct Engine {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
    limits: Limits,
}

impl Drop for Engine {
    /// Without waiting for its threads: an engine may be dropped on an async runtime's thread
    /// (a server's state), where blocking is not allowed.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Engine {
    /// An engine running queries on `threads` threads, each query within `limits`.
    pub fn new(threads: usize, limits: Limits) -> Result<Engine, SqlError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("fhirlake-sql")
            .thread_stack_size(STACK)
            .enable_time()
            .build()
            .map_err(|e| SqlError::Engine(e.to_string()))?;
        Ok(Engine {
            runtime: Some(runtime),
            limits,
        })
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn handle(&self) -> Handle {
        self.runtime
            .as_ref()
            .expect("a live engine")
            .handle()
            .clone()
    }

    /// Runs `work` on one of the engine's threads (their stacks are [`STACK`]) and waits for
    /// it.
    fn on_engine<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, SqlError>> + Send + 'static,
    ) -> Result<T, SqlError> {
        let handle = self.handle();
        handle
            .block_on(handle.spawn(work))
            .map_err(|e| SqlError::Engine(format!("the query's task failed: {e}")))?
    }

    fn context(limits: Limits) -> Result<SessionContext, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| SqlError::Engine(e.to_string()))?;
        let mut config = SessionConfig::new()
            .with_target_partitions(PARTITIONS)
            .with_batch_size(BATCH_ROWS)
            .with_information_schema(false);
        // Where in the query a fault is (a column's line and column).
        config.options_mut().sql_parser.collect_spans = true;
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }

    /// The names of the tables `sql` reads (common table expressions left out), in the case
    /// SQL gives them (unquoted names in lower case). An error when it is longer than
    /// [`MAX_QUERY`], not one statement of SQL, or names a table in another schema or catalog.
    pub fn tables(&self, sql: &str) -> Result<Vec<String>, SqlError> {
        check_size(sql)?;
        let (sql, limits) = (sql.to_string(), self.limits);
        self.on_engine(async move {
            let context = Engine::context(limits)?;
            let state = context.state();
            let statement = parse(&state, &sql)?;
            let mut names = Vec::new();
            for reference in state
                .resolve_table_references(&statement)
                .map_err(invalid)?
            {
                if reference.catalog().is_some() || reference.schema().is_some() {
                    return Err(SqlError::Invalid(format!(
                        "{reference}: there are only the views' tables, named without a schema"
                    )));
                }
                let name = reference.table().to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Ok(names)
        })
    }

    /// Plans `sql` over `tables` (by name) and starts it.
    pub fn query(&self, sql: &str, tables: Vec<(String, Table)>) -> Result<Query, SqlError> {
        check_size(sql)?;
        let deadline = Instant::now() + self.limits.time;
        let limits = self.limits;
        let handle = self.handle();
        let failure: Failure = Arc::default();
        let context = Engine::context(limits)?;
        for (name, table) in tables {
            let schema = schema(&table.columns);
            let provider: Arc<dyn TableProvider> = match table.rows {
                Rows::Made(source) => {
                    let partition = Partition {
                        schema: schema.clone(),
                        source,
                        handle: handle.clone(),
                        failure: failure.clone(),
                    };
                    Arc::new(
                        StreamingTable::try_new(schema, vec![Arc::new(partition)])
                            .map_err(invalid)?,
                    )
                }
                Rows::Held(batches) => {
                    // One partition per thread, the batches dealt out in turn.
                    let mut partitions = vec![Vec::new(); PARTITIONS];
                    for (i, batch) in batches.into_iter().enumerate() {
                        partitions[i % PARTITIONS].push(batch);
                    }
                    Arc::new(MemTable::try_new(schema, partitions).map_err(invalid)?)
                }
            };
            context
                .register_table(name.as_str(), provider)
                .map_err(invalid)?;
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let (sql, planned_failure) = (sql.to_string(), failure.clone());
        let stream = self.on_engine(async move {
            let state = context.state();
            let statement = parse(&state, &sql)?;
            let planning = async {
                let plan = state.statement_to_plan(statement).await?;
                options.verify_plan(&plan)?;
                let frame = context.execute_logical_plan(plan).await?;
                frame.execute_stream().await
            };
            match tokio::time::timeout_at(deadline.into(), planning).await {
                Err(_) => Err(too_long(limits)),
                Ok(planned) => planned.map_err(|e| classify(e, &planned_failure)),
            }
        })?;
        let schema = stream.schema();
        // The stream is driven on the engine's threads too (expressions are evaluated where
        // it is polled), one batch ahead of the caller.
        let (sender, batches) = mpsc::channel(1);
        let driver = handle.spawn(async move {
            let mut stream = stream;
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Query {
            schema,
            batches,
            driver,
            done: false,
            handle,
            deadline,
            limits,
            failure,
        })
    }
}

/// The stack of the engine's threads: parsing, checking and dropping a query recurse on its
/// expressions (DataFusion grows the stack where it recurses most, not everywhere).
pub const STACK: usize = 64 << 20;

/// The longest query, in bytes.
pub const MAX_QUERY: usize = 32 * 1024;

/// How deeply a query's expressions and subqueries may nest (`a + b` is one level below its
/// parent): planning costs grow much faster than the depth, so a query past it is refused
/// before it is planned.
pub const MAX_DEPTH: usize = 128;

/// `sql` parsed: one query (`SELECT`, `WITH`, `VALUES`, set operations), nested at most
/// [`MAX_DEPTH`] deep; anything else is refused before it is planned.
fn parse(state: &SessionState, sql: &str) -> Result<DfStatement, SqlError> {
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).map_err(invalid)?;
    let DfStatement::Statement(inner) = &statement else {
        return Err(not_a_query());
    };
    if !matches!(**inner, SqlStatement::Query(_)) {
        return Err(not_a_query());
    }
    let mut depth = Depth { now: 0 };
    if inner.visit(&mut depth).is_break() {
        return Err(SqlError::Invalid(format!(
            "the query nests more than {MAX_DEPTH} levels deep"
        )));
    }
    Ok(statement)
}

fn not_a_query() -> SqlError {
    SqlError::Invalid(
        "only a query runs (SELECT, WITH, VALUES): nothing that defines, changes or sets".into(),
    )
}

/// Counts how deeply expressions and queries nest, and stops past [`MAX_DEPTH`].
struct Depth {
    now: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > MAX_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _: &SqlQuery) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &SqlQuery) -> ControlFlow<()> {
        self.leave()
    }
}

fn check_size(sql: &str) -> Result<(), SqlError> {
    if sql.len() > MAX_QUERY {
        return Err(SqlError::Invalid(format!(
            "the query is {} bytes long: at most {MAX_QUERY}",
            sql.len()
        )));
    }
    Ok(())
}

/// A source's failure, kept aside while DataFusion carries only its text.
type Failure = Arc<Mutex<Option<SourceError>>>;

/// A running query.
pub struct Query {
    schema: SchemaRef,
    /// Its batches, as the driver task makes them.
    batches: mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    driver: JoinHandle<()>,
    done: bool,
    handle: Handle,
    deadline: Instant,
    limits: Limits,
    failure: Failure,
}

impl Query {
    /// The schema of its result.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Its next batch of result rows; `None` once it is done. Blocks until it is made.
    pub fn next_batch(&mut self) -> Option<Result<RecordBatch, SqlError>> {
        if self.done {
            return None;
        }
        let deadline = self.deadline.into();
        let batches = &mut self.batches;
        let next = self
            .handle
            .block_on(async { tokio::time::timeout_at(deadline, batches.recv()).await });
        let batch = match next {
            Err(_) => Some(Err(too_long(self.limits))),
            Ok(None) => None,
            Ok(Some(batch)) => Some(batch.map_err(|e| classify(e, &self.failure))),
        };
        if !matches!(batch, Some(Ok(_))) {
            // Done or failed: stop the query (and so its sources) now.
            self.done = true;
            self.driver.abort();
        }
        batch
    }
}

impl Drop for Query {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn too_long(limits: Limits) -> SqlError {
    SqlError::TooCostly(format!(
        "the query ran longer than its limit of {} ms",
        limits.time.as_millis()
    ))
}

fn invalid(error: DataFusionError) -> SqlError {
    classify(error, &Failure::default())
}

/// What a DataFusion error means for the client: a source's failure as the source gave it, a
/// limit reached, else a fault of the query, located when DataFusion says where.
fn classify(error: DataFusionError, failure: &Failure) -> SqlError {
    if let Some(source) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return SqlError::Source(source);
    }
    let at = error.diagnostic().and_then(|d| d.span).map(|span| {
        format!(
            " (at line {}, column {})",
            span.start.line, span.start.column
        )
    });
    let message = format!("{}{}", error.find_root(), at.unwrap_or_default());
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => SqlError::TooCostly(format!(
            "the query needs more memory than its limit: {message}"
        )),
        _ => SqlError::Invalid(message),
    }
}

/// The one partition of a table: its source, run on a blocking thread when scanned.
struct Partition {
    schema: SchemaRef,
    source: Arc<dyn RowSource>,
    handle: Handle,
    failure: Failure,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("schema", &self.schema)
            .finish()
    }
}

impl PartitionStream for Partition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let (source, schema, failure) = (
            self.source.clone(),
            self.schema.clone(),
            self.failure.clone(),
        );
        self.handle.spawn_blocking(move || {
            let mut builder = BatchBuilder::new(schema);
            let send = |builder: &mut BatchBuilder| {
                let batch = builder
                    .finish()
                    .map_err(|e| DataFusionError::Execution(e.to_string()));
                sender.blocking_send(batch).is_ok()
            };
            let mut refused = None;
            let produced = source.produce(&mut |row| {
                if let Err(error) = builder.push(row) {
                    refused = Some(error);
                    return false;
                }
                builder.len() < BATCH_ROWS || send(&mut builder)
            });
            let last = match (produced, refused) {
                (_, Some(error)) => Err(DataFusionError::Execution(error.to_string())),
                (Err(error), None) => {
                    let text = error.to_string();
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                    Err(DataFusionError::Execution(text))
                }
                (Ok(()), None) if builder.is_empty() => return,
                (Ok(()), None) => builder
                    .finish()
                    .map_err(|e| DataFusionError::Execution(e.to_string())),
            };
            // The query may be gone: nothing to do then.
            let _ = sender.blocking_send(last);
        });
        let batches = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let batch = receiver.recv().await?;
            Some((batch, receiver))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Numbers(i64);

    impl RowSource for Numbers {
        fn produce(&self, emit: &mut dyn FnMut(&[Value]) -> bool) -> Result<(), SourceError> {
            for n in 0..self.0 {
                if !emit(&[json!(format!("k{}", n % 3)), json!(n)]) {
                    break;
                }
            }
            Ok(())
        }
    }

    struct Failing;

    impl RowSource for Failing {
        fn produce(&self, _: &mut dyn FnMut(&[Value]) -> bool) -> Result<(), SourceError> {
            Err("the store is gone".into())
        }
    }

    fn table(source: Arc<dyn RowSource>) -> Table {
        Table {
            columns: vec![
                ColumnSpec {
                    name: "k".into(),
                    ty: None,
                    collection: false,
                },
                ColumnSpec {
                    name: "n".into(),
                    ty: Some("integer64".into()),
                    collection: false,
                },
            ],
            rows: Rows::Made(source),
        }
    }

    fn engine() -> Engine {
        Engine::new(
            2,
            Limits {
                memory: 64 << 20,
                time: Duration::from_secs(30),
            },
        )
        .unwrap()
    }

    fn run(
        engine: &Engine,
        sql: &str,
        source: Arc<dyn RowSource>,
    ) -> Result<Vec<Vec<Value>>, SqlError> {
        let mut query = engine.query(sql, vec![("numbers".into(), table(source))])?;
        let mut rows = Vec::new();
        while let Some(batch) = query.next_batch() {
            rows.extend(crate::batch::rows_of(&batch?).unwrap());
        }
        Ok(rows)
    }

    #[test]
    fn an_aggregate_over_a_streamed_table() {
        let engine = engine();
        let rows = run(
            &engine,
            "SELECT k, count(*) AS c, sum(n) AS s FROM numbers GROUP BY k ORDER BY k",
            Arc::new(Numbers(20_000)),
        )
        .unwrap();
        let expected: Vec<Vec<Value>> = (0..3)
            .map(|k| {
                let ns = (0..20_000_i64).filter(|n| n % 3 == k);
                vec![
                    json!(format!("k{k}")),
                    json!(ns.clone().count()),
                    json!(ns.sum::<i64>()),
                ]
            })
            .collect();
        assert_eq!(rows, expected);
        let limited = run(
            &engine,
            "SELECT n FROM numbers LIMIT 3",
            Arc::new(Numbers(1 << 40)),
        );
        assert_eq!(limited.unwrap().len(), 3);
    }

    /// A table held as batches answers as the same rows made by a source.
    #[test]
    fn a_held_table_answers_as_a_made_one() {
        let engine = engine();
        let made = table(Arc::new(Numbers(20_000)));
        let mut builder = BatchBuilder::new(schema(&made.columns));
        let mut batches = Vec::new();
        Numbers(20_000)
            .produce(&mut |row| {
                builder.push(row).unwrap();
                if builder.len() == 3_000 {
                    batches.push(builder.finish().unwrap());
                }
                true
            })
            .unwrap();
        batches.push(builder.finish().unwrap());
        let held = Table {
            columns: made.columns.clone(),
            rows: Rows::Held(batches),
        };
        let sql = "SELECT k, count(*) AS c, sum(n) AS s FROM numbers GROUP BY k ORDER BY k";
        let answer = |table: Table| {
            let mut query = engine.query(sql, vec![("numbers".into(), table)]).unwrap();
            let mut rows = Vec::new();
            while let Some(batch) = query.next_batch() {
                rows.extend(crate::batch::rows_of(&batch.unwrap()).unwrap());
            }
            rows
        };
        let expected = answer(made);
        assert_eq!(expected.len(), 3);
        assert_eq!(answer(held), expected);
    }

    #[test]
    fn tables_are_named_by_the_query() {
        let engine = engine();
        assert_eq!(
            engine
                .tables("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN B ON true JOIN a ON true")
                .unwrap(),
            vec!["a", "b"]
        );
        assert!(matches!(
            engine.tables("SELECT * FROM s.a"),
            Err(SqlError::Invalid(_))
        ));
        assert!(matches!(
            engine.tables("SELEC 1"),
            Err(SqlError::Invalid(_))
        ));
    }

    #[test]
    fn faults_and_writes_are_invalid_and_located() {
        let engine = engine();
        let fault = |sql: &str| match run(&engine, sql, Arc::new(Numbers(10))) {
            Err(SqlError::Invalid(message)) => message,
            other => panic!("{sql}: {:?}", other.map(|r| r.len())),
        };
        let unknown = fault("SELECT k,\n  nope FROM numbers");
        assert!(
            unknown.contains("nope") && unknown.contains("line 2, column 3"),
            "{unknown}"
        );
        let syntax = fault("SELECT n FROM numbers WHERE ) = 1");
        assert!(syntax.contains("Line: 1"), "{syntax}");
        assert!(fault("SELECT * FROM other").contains("other"));
        for write in [
            "CREATE TABLE t AS SELECT 1",
            "INSERT INTO numbers VALUES ('a', 1)",
            "COPY numbers TO '/tmp/fhirlake-sql-copy.csv'",
            "SET datafusion.execution.batch_size = 1",
            "DROP TABLE numbers",
        ] {
            fault(write);
        }
        assert!(!std::path::Path::new("/tmp/fhirlake-sql-copy.csv").exists());
        let deep = format!(
            "SELECT {}1{} FROM numbers",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        fault(&deep);
        // Nested as deep as allowed: planned and run; deeper (as deep as a query within
        // MAX_QUERY can nest): refused before it is planned, without overflowing the stack.
        let terms = MAX_DEPTH - 4;
        let deep_enough = format!("SELECT 1{} AS x FROM numbers", "+1".repeat(terms));
        let rows = run(&engine, &deep_enough, Arc::new(Numbers(2))).unwrap();
        assert_eq!(rows[0][0], json!(terms + 1));
        let too_deep = format!(
            "SELECT 1{} AS x FROM numbers",
            "+1".repeat((MAX_QUERY - 100) / 2)
        );
        assert!(fault(&too_deep).contains("levels deep"));
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(40), ")".repeat(40));
        fault(&subqueries);
        fault(&format!("SELECT 1{} FROM numbers", "+1".repeat(MAX_QUERY)));
    }

    #[test]
    fn limits_and_source_failures() {
        let small = Engine::new(
            1,
            Limits {
                memory: 1 << 20,
                time: Duration::from_secs(30),
            },
        )
        .unwrap();
        let costly = run(
            &small,
            "SELECT n, count(*) FROM numbers GROUP BY n ORDER BY n",
            Arc::new(Numbers(1_000_000)),
        );
        assert!(matches!(costly, Err(SqlError::TooCostly(_))), "{costly:?}");
        let quick = Engine::new(
            1,
            Limits {
                memory: 64 << 20,
                time: Duration::from_millis(1),
            },
        )
        .unwrap();
        let slow = run(
            &quick,
            "SELECT count(*) FROM numbers a JOIN numbers b ON a.k = b.k",
            Arc::new(Numbers(1 << 40)),
        );
        assert!(matches!(slow, Err(SqlError::TooCostly(_))), "{slow:?}");
        let failed = run(&engine(), "SELECT count(*) FROM numbers", Arc::new(Failing));
        assert!(
            matches!(&failed, Err(SqlError::Source(e)) if e.to_string() == "the store is gone"),
            "{failed:?}"
        );
    }
}
