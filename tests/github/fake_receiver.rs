//! A fake HTTP receiver on 127.0.0.1 standing in for a Slack incoming webhook or any webhook
//! endpoint: records every POST (path, headers, raw body) and answers with queued statuses,
//! then 200 "ok".

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Vec<Delivery>,
    answers: VecDeque<u16>,
}

#[derive(Clone)]
pub struct FakeReceiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl FakeReceiver {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeReceiver { url, state }
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.state.lock().unwrap().answers.extend(statuses);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    s.deliveries.push(Delivery {
        path: uri.path().to_owned(),
        headers: headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: body.to_vec(),
    });
    let status = s.answers.pop_front().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), if status == 200 { "ok" } else { "server_error" }).into_response()
}
