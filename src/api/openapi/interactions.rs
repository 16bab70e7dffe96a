//! The FHIR interactions fhirlake serves, one function each, as OpenAPI operations.
//!
//! A resource type's interactions are the functions in [`TYPE_INTERACTIONS`], called once per
//! R4 type; the system's are in [`SYSTEM_INTERACTIONS`]. Describing a new interaction is one
//! function that returns an [`Interaction`] (its own query parameters built with
//! [`super::components::parameter`]) and one entry in its list. The lists must say what the
//! CapabilityStatement says: a test compares their interaction codes.

use super::components::{Error, FhirBodies, Header, Param};
use serde_json::json;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterIn};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Required, Response, ResponseBuilder};

/// The tag of the interactions that are not about one resource type.
pub const SYSTEM_TAG: &str = "System";

/// One interaction as the document shows it.
pub struct Interaction {
    /// The FHIR interaction codes it implements (`CapabilityStatement.rest.interaction.code`
    /// or `rest.resource.interaction.code`).
    pub codes: &'static [&'static str],
    /// The path, from the server root (`/fhir/Patient/{id}`).
    pub path: String,
    pub method: HttpMethod,
    pub operation: Operation,
}

/// The interactions of every resource type.
pub const TYPE_INTERACTIONS: &[fn(&str) -> Interaction] = &[
    create,
    read,
    vread,
    update,
    patch,
    delete,
    history_instance,
    history_type,
    search_type,
];

/// The interactions of the whole server.
pub const SYSTEM_INTERACTIONS: &[fn() -> Interaction] = &[
    capabilities,
    versions,
    transaction_or_batch,
    history_system,
    search_system,
    changes_pull,
    changes_stream,
    changes_websocket,
];

/// The tag of the change stream's operations.
pub const CHANGES_TAG: &str = "Change stream";

/// `POST /fhir/{type}`
fn create(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("create{resource_type}"),
        format!("create: store a new {resource_type} with a server-assigned id"),
        "Any `id` in the body is replaced by a new one; `meta.versionId` and \
         `meta.lastUpdated` are set by the server. Search criteria in `If-None-Exist`, or in \
         the query (`POST /fhir/Patient?identifier=...`), make it a conditional create: when \
         one resource the client may read matches, it is the answer (200) and nothing is \
         created; several are 412.",
    )
    .parameter_ref(Param::Prefer.reference())
    .request_body(Some(resource_body(
        resource_type,
        json!({ "resourceType": resource_type }),
    )))
    .response(
        "201",
        written("Created: version 1 of the new resource.", resource_type),
    );
    Interaction {
        codes: &["create"],
        path: format!("/fhir/{resource_type}"),
        method: HttpMethod::Post,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotAcceptable,
                Error::TooLarge,
                Error::UnsupportedMediaType,
                Error::Unprocessable,
                Error::NotImplemented,
            ],
        )
        .build(),
    }
}

/// `GET /fhir/{type}/{id}`
fn read(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("read{resource_type}"),
        format!("read: the current version of a {resource_type}"),
        "With `If-None-Match` or `If-Modified-Since` the answer is 304 when the client's \
         copy is current.",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::IfNoneMatch.reference())
    .parameter_ref(Param::IfModifiedSince.reference())
    .response(
        "200",
        resource_response("The current version.", resource_type),
    )
    .response(
        "304",
        with_headers(
            ResponseBuilder::new(),
            &[Header::ETag, Header::LastModified],
        )
        .description("Not modified: the version the client named is the current one.")
        .build(),
    );
    Interaction {
        codes: &["read"],
        path: format!("/fhir/{resource_type}/{{id}}"),
        method: HttpMethod::Get,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotFound,
                Error::NotAcceptable,
                Error::Gone,
            ],
        )
        .build(),
    }
}

/// `GET /fhir/{type}/{id}/_history/{vid}`
fn vread(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("vread{resource_type}"),
        format!("vread: one version of a {resource_type}"),
        "Every version stays readable, also after the resource was updated or deleted.",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::Vid.reference())
    .response("200", resource_response("That version.", resource_type));
    Interaction {
        codes: &["vread"],
        path: format!("/fhir/{resource_type}/{{id}}/_history/{{vid}}"),
        method: HttpMethod::Get,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotFound,
                Error::NotAcceptable,
                Error::Gone,
            ],
        )
        .build(),
    }
}

/// `PUT /fhir/{type}/{id}`
fn update(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("update{resource_type}"),
        format!("update: replace a {resource_type}, or create it with this id"),
        "The body's `id` must be the id in the URL. A resource that does not exist (or was \
         deleted) is created with the client's id: 201, unless the token is confined to part \
         of the type (405). With `If-Match` the update happens only if the current version is \
         the one named; with `If-None-Match: *` only if the \
         resource does not exist (412 otherwise). An update equal to the current version \
         (but for `meta.versionId` and `meta.lastUpdated`) makes no new version: 200 with the \
         current one.",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::IfMatch.reference())
    .parameter_ref(Param::Prefer.reference())
    .request_body(Some(resource_body(
        resource_type,
        json!({ "resourceType": resource_type, "id": "example" }),
    )))
    .response("200", written("Updated: the new version.", resource_type))
    .response(
        "201",
        written("Created with the client's id.", resource_type),
    );
    Interaction {
        codes: &["update"],
        path: format!("/fhir/{resource_type}/{{id}}"),
        method: HttpMethod::Put,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::MethodNotAllowed,
                Error::NotAcceptable,
                Error::PreconditionFailed,
                Error::TooLarge,
                Error::UnsupportedMediaType,
                Error::Unprocessable,
            ],
        )
        .build(),
    }
}

/// `PATCH /fhir/{type}/{id}`
fn patch(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("patch{resource_type}"),
        format!("patch: change part of a {resource_type}"),
        "The patch is applied to the current version and the result is written as an update: \
         validated the same way, a new version (none when the result equals the current \
         version), the body `Prefer` asks for. The body is a JSON Patch (RFC 6902, \
         `application/json-patch+json`; a failed `test` is 422), a FHIRPath Patch (a \
         `Parameters` resource) or a JSON Merge Patch (RFC 7396, \
         `application/merge-patch+json`, or any other object as FHIR JSON). The result must \
         keep the resource's `id`. With `If-Match` only that version is patched. \
         `PATCH /fhir/{type}?criteria` patches the one resource the criteria match (404 for \
         none, 412 for several).",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::IfMatch.reference())
    .parameter_ref(Param::Prefer.reference())
    .request_body(Some(patch_body(resource_type)))
    .response(
        "200",
        written(
            "Patched: the new version, or the current one when nothing changed.",
            resource_type,
        ),
    );
    Interaction {
        codes: &["patch"],
        path: format!("/fhir/{resource_type}/{{id}}"),
        method: HttpMethod::Patch,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotFound,
                Error::NotAcceptable,
                Error::Gone,
                Error::PreconditionFailed,
                Error::TooLarge,
                Error::UnsupportedMediaType,
                Error::Unprocessable,
            ],
        )
        .build(),
    }
}

/// The body of a patch of a `resource_type`, in each of its three formats; the examples set
/// `language`, which every resource has.
fn patch_body(resource_type: &str) -> RequestBody {
    let json_patch = ArrayBuilder::new().items(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("op", ObjectBuilder::new().schema_type(Type::String))
            .property("path", ObjectBuilder::new().schema_type(Type::String))
            .property("from", ObjectBuilder::new().schema_type(Type::String))
            .property("value", ObjectBuilder::new())
            .required("op")
            .required("path"),
    );
    RequestBodyBuilder::new()
        .description(Some(
            "A JSON Patch, a FHIRPath Patch (`Parameters`) or a JSON Merge Patch.",
        ))
        .required(Some(Required::True))
        .content(
            "application/json-patch+json",
            ContentBuilder::new()
                .schema(Some(json_patch))
                .example(Some(
                    json!([{"op": "add", "path": "/language", "value": "en"}]),
                ))
                .build(),
        )
        .fhir_bodies_with_example(
            "Parameters",
            Some(json!({
                "resourceType": "Parameters",
                "parameter": [{"name": "operation", "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": resource_type},
                    {"name": "name", "valueString": "language"},
                    {"name": "value", "valueCode": "en"}
                ]}]
            })),
        )
        .content(
            "application/merge-patch+json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .example(Some(json!({"language": "en"})))
                .build(),
        )
        .build()
}

/// `DELETE /fhir/{type}/{id}`
fn delete(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("delete{resource_type}"),
        format!("delete: delete a {resource_type}"),
        "Deleting adds a version that marks the resource deleted: reads answer 410 Gone \
         afterwards, history and vread still show every version. Deleting what does not \
         exist (or what the token may not read) succeeds too, and changes nothing.",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::IfMatch.reference())
    .parameter_ref(Param::Prefer.reference())
    .response(
        "204",
        with_headers(ResponseBuilder::new(), &[Header::ETag])
            .description("Deleted (or it did not exist). `ETag` names the deletion's version.")
            .build(),
    )
    .response(
        "200",
        with_headers(ResponseBuilder::new(), &[Header::ETag])
            .description("Deleted, with `Prefer: return=OperationOutcome`: an outcome says so.")
            .fhir_bodies("OperationOutcome")
            .build(),
    );
    Interaction {
        codes: &["delete"],
        path: format!("/fhir/{resource_type}/{{id}}"),
        method: HttpMethod::Delete,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotAcceptable,
                Error::PreconditionFailed,
            ],
        )
        .build(),
    }
}

/// `GET /fhir/{type}/{id}/_history`
fn history_instance(resource_type: &str) -> Interaction {
    let operation = history(
        operation(
            resource_type,
            format!("historyInstance{resource_type}"),
            format!("history: every version of a {resource_type}, newest first"),
            HISTORY,
        )
        .parameter_ref(Param::Id.reference()),
    );
    Interaction {
        codes: &["history-instance"],
        path: format!("/fhir/{resource_type}/{{id}}/_history"),
        method: HttpMethod::Get,
        operation: errors(operation, &[Error::NotFound]).build(),
    }
}

/// `GET /fhir/{type}/_history`
fn history_type(resource_type: &str) -> Interaction {
    let operation = history(operation(
        resource_type,
        format!("historyType{resource_type}"),
        format!("history: every version of every {resource_type}, newest first"),
        HISTORY,
    ));
    Interaction {
        codes: &["history-type"],
        path: format!("/fhir/{resource_type}/_history"),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir/metadata`
fn capabilities() -> Interaction {
    let operation = operation(
        SYSTEM_TAG,
        "capabilities".into(),
        "capabilities: the CapabilityStatement of this server".into(),
        "Says exactly which resource types and interactions this build supports. \
         `_summary=true` cuts it to its summary elements (from 1.4 MB to 20 kB); with \
         `If-None-Match` (its `ETag`) or `If-Modified-Since` the answer is 304 while it is the \
         same.",
    )
    .parameter(
        super::components::parameter(
            "_summary",
            ParameterIn::Query,
            "`true`: the summary elements only; `text`, `data`, `false` as for a read.",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .build(),
    )
    .parameter(
        super::components::parameter(
            "_elements",
            ParameterIn::Query,
            "Comma-separated top-level elements: only these (and the mandatory ones).",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .build(),
    )
    .parameter_ref(Param::IfNoneMatch.reference())
    .parameter_ref(Param::IfModifiedSince.reference())
    .response(
        "200",
        with_headers(
            ResponseBuilder::new(),
            &[Header::ETag, Header::LastModified],
        )
        .description("The CapabilityStatement.")
        .fhir_bodies("CapabilityStatement")
        .build(),
    )
    .response(
        "304",
        with_headers(
            ResponseBuilder::new(),
            &[Header::ETag, Header::LastModified],
        )
        .description("Not modified: the client's copy is current.")
        .build(),
    );
    Interaction {
        codes: &["capabilities"],
        path: super::METADATA_PATH.into(),
        method: HttpMethod::Get,
        operation: errors(operation, &[Error::NotAcceptable]).build(),
    }
}

/// `GET /fhir/$versions`
fn versions() -> Interaction {
    let operation = operation(
        SYSTEM_TAG,
        "versions".into(),
        "$versions: the FHIR versions this server supports".into(),
        "A Parameters resource with each supported FHIR version (`version`) and the default \
         one (`default`): `4.0` (R4) for both.",
    )
    .response(
        "200",
        ResponseBuilder::new()
            .description("The supported versions.")
            .fhir_bodies("Parameters")
            .build(),
    );
    Interaction {
        codes: &[],
        path: super::VERSIONS_PATH.into(),
        method: HttpMethod::Get,
        operation: errors(operation, &[Error::NotAcceptable]).build(),
    }
}

/// `POST /fhir`
fn transaction_or_batch() -> Interaction {
    let operation = operation(
        SYSTEM_TAG,
        "transactionOrBatch".into(),
        "transaction or batch: process a Bundle of requests".into(),
        "A `transaction` Bundle is all or nothing: every entry is applied in one commit, or \
         none is and the answer is the failing entry's error (its status, with an \
         OperationOutcome that names the entry). A `batch` Bundle runs each entry on its own \
         and reports each entry's outcome in the response Bundle. Entries may create (POST, \
         `ifNoneExist`), update (PUT, conditional `Type?criteria`), patch (PATCH, with a Binary holding a JSON \
         Patch or a Parameters FHIRPath Patch), delete (DELETE, \
         conditional) and read (GET or HEAD of anything the read endpoints serve: a read, \
         vread, search, history, `metadata`, `$versions`; in a transaction they run after \
         the writes and see them); references to an entry's `fullUrl` are rewritten to the \
         stored `Type/id`. `Prefer: return=...` applies to every written entry.",
    )
    .parameter_ref(Param::Prefer.reference())
    .request_body(Some(
        RequestBodyBuilder::new()
            .description(Some("A Bundle of type `transaction` or `batch`."))
            .required(Some(Required::True))
            .fhir_bodies_with_example(
                "Bundle",
                Some(json!({
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{
                        "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                        "resource": {"resourceType": "Patient", "active": true},
                        "request": {"method": "POST", "url": "Patient"}
                    }]
                })),
            )
            .build(),
    ))
    .response(
        "200",
        ResponseBuilder::new()
            .description(
                "The `transaction-response` or `batch-response` Bundle: one entry per request \
                 entry, in the same order, with its status, location and ETag.",
            )
            .fhir_bodies("Bundle")
            .build(),
    );
    Interaction {
        codes: &["transaction", "batch"],
        path: "/fhir".into(),
        method: HttpMethod::Post,
        operation: errors(
            operation,
            &[
                Error::BadRequest,
                Error::NotFound,
                Error::NotAcceptable,
                Error::Conflict,
                Error::Gone,
                Error::PreconditionFailed,
                Error::TooLarge,
                Error::UnsupportedMediaType,
                Error::NotImplemented,
            ],
        )
        .build(),
    }
}

/// `GET /fhir/_history`
fn history_system() -> Interaction {
    let operation = history(operation(
        SYSTEM_TAG,
        "historySystem".into(),
        "history: every version of every resource, newest first".into(),
        HISTORY,
    ));
    Interaction {
        codes: &["history-system"],
        path: "/fhir/_history".into(),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir/{type}?params`: with every search parameter of the type that the server
/// searches on.
fn search_type(resource_type: &str) -> Interaction {
    let mut operation = operation(
        resource_type,
        format!("search{resource_type}"),
        format!("search: the {resource_type} resources that match the parameters"),
        SEARCH,
    );
    for param in crate::search::registry::Registry::r4_shared().searchable(resource_type) {
        let description = format!("{} ({} parameter)", param.description, param.kind.as_str());
        operation = operation.parameter(
            super::components::parameter(
                &param.code,
                utoipa::openapi::path::ParameterIn::Query,
                &description,
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String),
            )
            .build(),
        );
    }
    let operation = search_answer(operation.parameter_ref(Param::Count.reference()));
    Interaction {
        codes: &["search-type"],
        path: format!("/fhir/{resource_type}"),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir/{compartment}/{id}/{type}`: a search in the compartment of one resource.
pub fn search_compartment(compartment: &str) -> Interaction {
    let operation = operation(
        compartment,
        format!("search{compartment}Compartment"),
        format!("search: the resources in the compartment of a {compartment}"),
        "The members of one type (`*`: of every type) of the compartment, as the R4 \
         CompartmentDefinition says, with the focal resource itself; they can be searched with \
         the parameters of their type (of every type for `*`).",
    )
    .parameter_ref(Param::Id.reference())
    .parameter(
        super::components::parameter(
            "type",
            utoipa::openapi::path::ParameterIn::Path,
            "A resource type that can be in the compartment, or `*`.",
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String),
        )
        .build(),
    )
    .parameter_ref(Param::Count.reference());
    Interaction {
        codes: &["search-type"],
        path: format!("/fhir/{compartment}/{{id}}/{{type}}"),
        method: HttpMethod::Get,
        operation: search_answer(operation).build(),
    }
}

/// `GET /fhir/{Patient|Encounter}/{id}/$everything`
pub fn everything(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("everything{resource_type}"),
        format!("$everything: a {resource_type}, its compartment and what they refer to"),
        "A `searchset` Bundle: the resource and every resource in its compartment (matches), \
         and on each page every resource the page's matches refer to (includes). `_since` \
         keeps what changed since an instant, `_type` the types named, a Patient's `start` \
         and `end` what has care in that period; pages as in search.",
    )
    .parameter_ref(Param::Id.reference())
    .parameter_ref(Param::Count.reference())
    .parameter_ref(Param::Since.reference());
    // R4 gives `start` and `end` to Patient's $everything only.
    let operation = if resource_type == "Patient" {
        let date = |name: &str, what: &str| {
            super::components::parameter(
                name,
                utoipa::openapi::path::ParameterIn::Query,
                what,
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String),
            )
            .build()
        };
        operation
            .parameter(date(
                "start",
                "Only resources with care from this date on (or without a date of care).",
            ))
            .parameter(date(
                "end",
                "Only resources with care up to this date (or without a date of care).",
            ))
    } else {
        operation
    };
    let operation = errors(search_answer(operation), &[Error::NotFound]);
    Interaction {
        codes: &[],
        path: format!("/fhir/{resource_type}/{{id}}/$everything"),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir?_type=...`
fn search_system() -> Interaction {
    let operation = operation(
        SYSTEM_TAG,
        "searchSystem".into(),
        "search: resources of every type (or of those `_type` names) that match".into(),
        SEARCH,
    )
    .parameter(
        super::components::parameter(
            "_type",
            utoipa::openapi::path::ParameterIn::Query,
            "Comma-separated resource types to search.",
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String),
        )
        .build(),
    );
    Interaction {
        codes: &["search-system"],
        path: "/fhir".into(),
        method: HttpMethod::Get,
        operation: search_answer(operation.parameter_ref(Param::Count.reference())).build(),
    }
}

/// `GET /fhir/$changes`
fn changes_pull() -> Interaction {
    let page = ObjectBuilder::new()
        .property(
            "events",
            ArrayBuilder::new()
                .items(ObjectBuilder::new().description(Some("A CloudEvents 1.0 event (JSON)."))),
        )
        .property(
            "next",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The offset (`since`) to ask from next.")),
        )
        .required("events")
        .required("next");
    let operation = change_filters(operation(
        CHANGES_TAG,
        "changes".into(),
        "$changes: the changes after an offset, oldest first".into(),
        "A page of the change log: `events`, each committed version after `since` (a change's \
         seq, its event `id`) as a CloudEvents 1.0 event, oldest first, and `next`, the offset \
         to ask from next (it moves past the changes the filters leave out). Replaying from \
         0 gives every change the log still holds.",
    ))
    .parameter_ref(Param::Count.reference())
    .response(
        "200",
        ResponseBuilder::new()
            .description("A page of change events.")
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(page)).build(),
            )
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/$changes".into(),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir/$changes/stream`
fn changes_stream() -> Interaction {
    let operation = change_filters(operation(
        CHANGES_TAG,
        "changesStream".into(),
        "$changes/stream: the changes as Server-Sent Events".into(),
        "Every change after `since` (or `Last-Event-ID`, which wins), then every new one as it \
         is committed: one event per change, `id:` its seq and `data:` its CloudEvent. A \
         keep-alive comment comes every 15 s. A consumer that falls behind by more than its \
         buffer gets `event: reconnect` with `{\"since\": N}` and the stream ends; \
         reconnecting with `Last-Event-ID` loses nothing.",
    ))
    .parameter(
        super::components::parameter(
            "Last-Event-ID",
            ParameterIn::Header,
            "The id of the last event processed: the stream resumes after it.",
            ObjectBuilder::new().schema_type(Type::String),
        )
        .build(),
    )
    .response(
        "200",
        ResponseBuilder::new()
            .description("The event stream.")
            .content(
                "text/event-stream",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/$changes/stream".into(),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// `GET /fhir/$changes/websocket`
fn changes_websocket() -> Interaction {
    let operation = change_filters(operation(
        CHANGES_TAG,
        "changesWebSocket".into(),
        "$changes/websocket: the changes over a WebSocket".into(),
        "A WebSocket upgrade; then one text message per change, its CloudEvent, from `since` \
         on, and pings every 15 s. A consumer that falls behind by more than its buffer is \
         closed with code 1013 and the reason `since=N`, the offset to reconnect from.",
    ))
    .response(
        "101",
        ResponseBuilder::new()
            .description("Switching Protocols: the WebSocket is open.")
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/$changes/websocket".into(),
        method: HttpMethod::Get,
        operation: operation.build(),
    }
}

/// The query parameters and errors every change-stream operation shares.
fn change_filters(mut operation: OperationBuilder) -> OperationBuilder {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    for (name, description, schema) in [
        (
            "since",
            "The offset: the seq of the last change already processed (default 0).",
            ObjectBuilder::new().schema_type(Type::Integer),
        ),
        (
            "_type",
            "Comma-separated resource types: only their changes.",
            text(),
        ),
        (
            "criteria",
            "FHIR search criteria, `Type?params` (no chains or `_has`): only the changes whose \
             version matches (a deletion: whose deleted version matched).",
            text(),
        ),
        (
            "content",
            "`full` (the default): `data` is the resource; `id-only`: a Reference to the version.",
            text(),
        ),
    ] {
        operation = operation.parameter(
            super::components::parameter(name, ParameterIn::Query, description, schema).build(),
        );
    }
    errors(
        operation,
        &[Error::BadRequest, Error::NotAcceptable, Error::Gone],
    )
}

/// The searchset answer and the errors of every search.
fn search_answer(operation: OperationBuilder) -> OperationBuilder {
    let operation = operation.response(
        "200",
        ResponseBuilder::new()
            .description("A page of the searchset Bundle.")
            .fhir_bodies("Bundle")
            .build(),
    );
    errors(operation, &[Error::BadRequest, Error::NotAcceptable])
}

const SEARCH: &str = "A `searchset` Bundle of the matches, a page at a time (`_count`, `next` \
    link over a stable snapshot), with `total` unless `_total=none`; `_summary=count` gives the \
    total alone. Parameters are ANDed when repeated and ORed across commas; unknown ones are \
    ignored and reported in an OperationOutcome entry, or refused with 400 under \
    `Prefer: handling=strict`. The search sees every write acknowledged before it.";

const HISTORY: &str = "A `history` Bundle, newest version first, one entry per version with \
    its request method and response status; a deletion is an entry without a resource. Pages \
    are cut by `_count`; the `next` link leads to the following page, which new writes never \
    shift.";

/// The parts every operation has: its tag, id, summary and description.
pub(super) fn operation(
    tag: &str,
    id: String,
    summary: String,
    description: &str,
) -> OperationBuilder {
    OperationBuilder::new()
        .tag(tag)
        .operation_id(Some(id))
        .summary(Some(summary))
        .description(Some(description))
}

/// Adds the history parameters, the history Bundle answer and the errors of every history.
fn history(operation: OperationBuilder) -> OperationBuilder {
    let operation = operation
        .parameter_ref(Param::Count.reference())
        .parameter_ref(Param::Since.reference())
        .parameter_ref(Param::At.reference())
        .response(
            "200",
            ResponseBuilder::new()
                .description("A page of the history Bundle.")
                .fhir_bodies("Bundle")
                .build(),
        );
    errors(operation, &[Error::BadRequest, Error::NotAcceptable])
}

pub(super) fn errors(mut operation: OperationBuilder, errors: &[Error]) -> OperationBuilder {
    for error in errors {
        operation = operation.response(error.status(), error.reference());
    }
    operation
}

/// The body of a create or update: a resource of `resource_type`; a Binary may also be its
/// raw content.
fn resource_body(resource_type: &str, example: serde_json::Value) -> RequestBody {
    let mut description = format!(
        "A {resource_type} in FHIR JSON or FHIR XML (`application/json` and `application/xml` \
         are accepted too). The example is the smallest body; most types have required \
         elements to add."
    );
    if resource_type == "Binary" {
        description.push_str(
            " Any other content type is the content itself: stored as the Binary's `data`, \
             with `contentType` from `Content-Type` and `securityContext` from the \
             `X-Security-Context` header.",
        );
    }
    let body = RequestBodyBuilder::new()
        .description(Some(description))
        .required(Some(Required::True))
        .fhir_bodies_with_example(resource_type, Some(example));
    match resource_type {
        "Binary" => body.content(RAW, raw_content()),
        _ => body,
    }
    .build()
}

/// The media type of a Binary's content as it is.
const RAW: &str = "*/*";

/// A Binary's content as it is: bytes of its `contentType`.
fn raw_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/octet-stream"),
        ))
        .build()
}

/// A version of a resource, with its `ETag` and `Last-Modified`; a Binary's is its raw
/// content unless the client asks for FHIR first.
fn resource_response(description: &str, resource_type: &str) -> Response {
    let response = with_headers(
        ResponseBuilder::new(),
        &[Header::ETag, Header::LastModified],
    )
    .fhir_bodies(resource_type);
    match resource_type {
        "Binary" => response
            .description(format!(
                "{description} In its own content type (`contentType`, with \
                 `X-Security-Context` naming its `securityContext`) unless `_format` or the \
                 most preferred type of `Accept` is FHIR JSON or XML: a browser gets the \
                 content."
            ))
            .content(RAW, raw_content()),
        _ => response.description(description),
    }
    .build()
}

/// The answer to a write: the version written, with `Location`, whose body `Prefer` chooses.
fn written(description: &str, resource_type: &str) -> Response {
    with_headers(
        ResponseBuilder::new(),
        &[Header::ETag, Header::LastModified, Header::Location],
    )
    .description(format!(
        "{description} The body is the stored resource, nothing with \
         `Prefer: return=minimal`, or an OperationOutcome with `Prefer: return=OperationOutcome` \
         (with the validator's warnings, which also come one per `X-FHIR-Request-Validation` \
         header)."
    ))
    .fhir_bodies(resource_type)
    .build()
}

fn with_headers(mut response: ResponseBuilder, headers: &[Header]) -> ResponseBuilder {
    for header in headers {
        response = response.header_ref(header.name(), header.reference());
    }
    response
}
