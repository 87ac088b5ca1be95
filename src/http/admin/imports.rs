//! CSV imports in the console: the upload form, the upload (stored as a job that a worker
//! imports in the background, see `processes::imports`), each job's progress page and the list
//! of recent imports.

use actix_multipart::Multipart;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use futures_util::StreamExt;

use super::{path_id, query, see_other, Answer, Chrome, Fault, MAX_IMPORT_BYTES};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::processes::imports::{self as runner, Enqueued};
use crate::stores::imports::{self, Job};
use crate::stores::subscriptions::directory::ImportOptions;
use crate::stores::subscriptions::import::MAX_IMPORT_ROWS;

/// How many imports the lists show.
const RECENT: i64 = 20;

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    chrome: Chrome,
    error: Option<String>,
    max_mb: usize,
    max_rows: usize,
    recent: Vec<Job>,
}

async fn import_page_with(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    error: Option<String>,
) -> HttpResponse {
    // The list is a help, not the page: without the database the form still shows.
    let recent = query(state, |conn| Ok(imports::recent(conn, RECENT)?))
        .await
        .unwrap_or_default();
    html(
        status,
        &ImportPage {
            chrome: Chrome::new(state, req, "subscribers"),
            error,
            max_mb: MAX_IMPORT_BYTES / (1024 * 1024),
            max_rows: MAX_IMPORT_ROWS,
            recent,
        },
    )
}

/// `GET /admin/subscribers/import`: the form and the recent imports.
pub async fn import_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    import_page_with(&state, &req, StatusCode::OK, None).await
}

/// The fields of the import form.
#[derive(Default)]
struct Upload {
    file: Vec<u8>,
    file_name: String,
    consent: String,
    source: String,
}

/// Why an upload could not be taken, in the editor's words.
enum UploadError {
    TooLarge,
    Unreadable(String),
}

/// Reads the multipart form, refusing a field over [`MAX_IMPORT_BYTES`] (the rest of the upload
/// is drained, so that the client gets the answer).
async fn read_upload(form: &mut Multipart) -> Result<Upload, UploadError> {
    let unreadable = |e: actix_multipart::MultipartError| {
        UploadError::Unreadable(format!("The upload could not be read: {e}"))
    };
    let mut upload = Upload::default();
    while let Some(field) = form.next().await {
        let mut field = field.map_err(unreadable)?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = (field.content_disposition())
            .and_then(|d| d.get_filename())
            .unwrap_or_default()
            .to_string();
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(unreadable)?;
            if value.len() + chunk.len() > MAX_IMPORT_BYTES {
                drain(field, form).await;
                return Err(UploadError::TooLarge);
            }
            value.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&value).trim().to_string();
        match name.as_str() {
            "file" => {
                upload.file_name = file_name;
                upload.file = value;
            }
            "consent" => upload.consent = text(),
            "source" => upload.source = text().chars().take(200).collect(),
            _ => {}
        }
    }
    Ok(upload)
}

/// `POST /admin/subscribers/import` (multipart: `file`, `consent`, `source`): stores the file as
/// an import job and answers at once with a 303 to the job's progress page.
pub async fn import(state: web::Data<AppState>, req: HttpRequest, mut form: Multipart) -> Answer {
    let refuse = |status: StatusCode, message: String| {
        let (state, req) = (state.clone(), req.clone());
        async move { Ok(import_page_with(&state, &req, status, Some(message)).await) }
    };
    let too_large = || {
        let (state, req) = (state.clone(), req.clone());
        async move {
            let message = format!(
                "The file is larger than {} MB; split it and import the parts.",
                MAX_IMPORT_BYTES / (1024 * 1024)
            );
            let mut page =
                import_page_with(&state, &req, StatusCode::PAYLOAD_TOO_LARGE, Some(message)).await;
            // What is left of an oversized upload is not read: the connection closes after the
            // answer.
            page.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(page)
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BYTES + 64 * 1024) {
        return too_large().await;
    }
    let upload = match read_upload(&mut form).await {
        Ok(u) => u,
        Err(UploadError::TooLarge) => return too_large().await,
        Err(UploadError::Unreadable(why)) => return refuse(StatusCode::BAD_REQUEST, why).await,
    };
    if upload.file.is_empty() {
        let why = "Choose a CSV file to import.".to_string();
        return refuse(StatusCode::BAD_REQUEST, why).await;
    }
    if upload.source.is_empty() {
        let why = "Say where these addresses come from (it is kept with each consent record).";
        return refuse(StatusCode::BAD_REQUEST, why.into()).await;
    }
    let options = ImportOptions {
        consent_held: upload.consent == "held",
        source: upload.source,
        editor: super::editor_name(&req),
    };
    let file_name = if upload.file_name.is_empty() {
        "upload.csv".to_string()
    } else {
        upload.file_name
    };
    let (data, name) = (upload.file, file_name.clone());
    let ip = state.client_ip(&req).to_string();
    let enqueued = query(&state, move |conn| {
        let upload = runner::Upload {
            file_name: &name,
            data: &data,
            options: &options,
            ip: &ip,
        };
        runner::enqueue(conn, &upload)
    })
    .await?;
    let (id, rows) = match queued(enqueued) {
        Ok(job) => job,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why).await,
    };
    let detail = format!("import job {id}: {file_name}, {rows} rows");
    super::audit::note(&state, &req, "subscribers import queued", detail).await;
    Ok(see_other(&format!("/admin/imports/{id}")))
}

/// The job an upload became, or why it was refused, in the editor's words.
fn queued(enqueued: Enqueued) -> Result<(i64, i64), String> {
    match enqueued {
        Enqueued::Job { id, rows } => Ok((id, rows)),
        Enqueued::Empty => Err("The file has no rows to import.".to_string()),
        Enqueued::TooManyRows(n) => Err(format!(
            "The file has {n} rows; an import takes at most {MAX_IMPORT_ROWS}. Split it and \
             import the parts."
        )),
    }
}

/// Reads what is left of an upload refused as too large, so that the client, still sending, gets
/// the 413 rather than a reset connection; past 64 MB the connection is dropped instead. The field
/// is dropped once read: the form yields no next field while one is still held (waiting for it
/// was how an oversized upload once went unanswered).
async fn drain(mut field: actix_multipart::Field, form: &mut Multipart) {
    let mut left = 64usize * 1024 * 1024;
    while let Some(Ok(chunk)) = field.next().await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            return;
        }
    }
    drop(field);
    while let Some(Ok(mut next)) = form.next().await {
        while let Some(Ok(chunk)) = next.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                return;
            }
        }
    }
}

#[derive(Template)]
#[template(path = "admin/import_job.html")]
struct JobPage {
    chrome: Chrome,
    job: Job,
    confirmed: i64,
    invited: i64,
    errors: Vec<(String, String)>,
    existing: Vec<(String, String, String)>,
    recent: Vec<Job>,
}

/// `GET /admin/imports/{id}`: where the import stands (it refreshes itself while it runs), the
/// rows refused and those on file already, and the recent imports.
pub async fn job_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let (job, recent) = query(&state, move |conn| {
        Ok((imports::find(conn, id)?, imports::recent(conn, RECENT)?))
    })
    .await?;
    let job = job.ok_or(Fault::NotFound)?;
    let (confirmed, invited) = if job.consent_held {
        (job.rows_imported, 0)
    } else {
        (0, job.rows_imported)
    };
    Ok(html(
        StatusCode::OK,
        &JobPage {
            chrome: Chrome::new(&state, &req, "subscribers"),
            errors: job.error_lines(),
            existing: job.existing_lines(),
            job,
            confirmed,
            invited,
            recent,
        },
    ))
}
