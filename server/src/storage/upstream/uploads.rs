//! One page of ListMultipartUploads from the backend, read from its XML (the orphan sweep's input).

use super::*;

/// One page of ListMultipartUploads: its uploads (key, id, initiated) and where the next starts.
#[derive(Debug, Default, PartialEq)]
pub(super) struct UploadsPage {
    pub(super) uploads: Vec<(String, String, String)>,
    pub(super) next: Option<(String, String)>,
}

impl UploadsPage {
    pub(super) fn parse(xml: &[u8]) -> io::Result<UploadsPage> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_reader(xml);
        let mut page = UploadsPage::default();
        let (mut path, mut text) = (Vec::<String>::new(), String::new());
        let (mut key, mut id, mut at) = (String::new(), String::new(), String::new());
        let (mut truncated, mut next_key, mut next_id) = (false, String::new(), String::new());
        let bad = |e: &dyn std::fmt::Display| {
            io::Error::other(format!("ListMultipartUploads answer: {e}"))
        };
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf).map_err(|e| bad(&e))? {
                Event::Start(e) => {
                    path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                    text.clear();
                }
                Event::Text(t) => {
                    let t = t.decode().map_err(|e| bad(&e))?;
                    text.push_str(&quick_xml::escape::unescape(&t).map_err(|e| bad(&e))?);
                }
                Event::GeneralRef(r) => {
                    let name = String::from_utf8_lossy(&r);
                    let entity = format!("&{name};");
                    text.push_str(&quick_xml::escape::unescape(&entity).map_err(|e| bad(&e))?);
                }
                Event::End(_) => {
                    let name = path.pop().unwrap_or_default();
                    let in_upload = path.last().is_some_and(|p| p == "Upload");
                    match (in_upload, name.as_str()) {
                        (true, "Key") => key = std::mem::take(&mut text),
                        (true, "UploadId") => id = std::mem::take(&mut text),
                        (true, "Initiated") => at = std::mem::take(&mut text),
                        (false, "Upload") => page.uploads.push((
                            std::mem::take(&mut key),
                            std::mem::take(&mut id),
                            std::mem::take(&mut at),
                        )),
                        (false, "IsTruncated") => truncated = text.trim() == "true",
                        (false, "NextKeyMarker") => next_key = std::mem::take(&mut text),
                        (false, "NextUploadIdMarker") => next_id = std::mem::take(&mut text),
                        _ => {}
                    }
                    text.clear();
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if truncated {
            page.next = Some((next_key, next_id));
        }
        Ok(page)
    }
}
