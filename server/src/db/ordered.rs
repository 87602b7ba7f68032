//! Joins futures so that every one of them is first polled, in the order given, within the
//! join's own first poll. tokio-postgres writes a request when its future is first polled, so
//! this is what fixes the order in which pipelined statements reach the server.
//!
//! `futures_util::future::join_all` does not promise it: above 30 futures it runs them in a
//! `FuturesUnordered`, which may return `Pending` before it has polled them all (when a waker
//! from another thread is mid-enqueue, or when two futures wake themselves). Anything polled
//! beside the join — a `ROLLBACK` after the units of a shared transaction — is then written
//! before the rest of them, and those run outside the transaction, without their caller's role.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::future::{MaybeDone, join_all, maybe_done};

/// Awaits all of `futures`, each first polled in order before this returns `Pending` for the
/// first time; their outputs in the same order.
pub async fn join_in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<MaybeDone<F>>>> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        for f in &mut futures {
            // Pending or done, it has been polled: its first messages are written.
            let _ = f.as_mut().poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    join_all(futures.iter_mut().map(|f| f.as_mut())).await;
    futures
        .iter_mut()
        .map(|f| {
            f.as_mut()
                .take_output()
                .expect("every future is done after join_all")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A future that records its first poll in `log`, wakes itself then (as a future does whose
    /// answer arrives while it is being polled) and finishes on its second poll.
    fn step(log: Arc<Mutex<Vec<usize>>>, n: usize) -> impl Future<Output = usize> {
        let mut polled = false;
        std::future::poll_fn(move |cx| {
            if polled {
                return Poll::Ready(n);
            }
            polled = true;
            log.lock().unwrap().push(n);
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    /// 200 steps between a first and a last: `join_in_order` polls every step before the last
    /// one; `join_all` (the hazard this module exists for) lets the last one in between.
    #[tokio::test]
    async fn every_future_is_first_polled_before_anything_after_the_join() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = (1..=200).map(|n| step(log.clone(), n));
        let (first, all, last) = tokio::join!(
            step(log.clone(), 0),
            join_in_order(steps),
            step(log.clone(), 201)
        );
        assert_eq!((first, last), (0, 201));
        assert_eq!(all, (1..=200).collect::<Vec<_>>());
        assert_eq!(*log.lock().unwrap(), (0..=201).collect::<Vec<_>>());

        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = (1..=200).map(|n| step(log.clone(), n));
        tokio::join!(
            step(log.clone(), 0),
            join_all(steps),
            step(log.clone(), 201)
        );
        let order = log.lock().unwrap().clone();
        assert_ne!(
            order,
            (0..=201).collect::<Vec<_>>(),
            "join_all now polls every future first: this module may no longer be needed"
        );
    }

    #[tokio::test]
    async fn outputs_keep_their_order_and_none_is_empty() {
        let none: Vec<std::future::Ready<u8>> = Vec::new();
        assert!(join_in_order(none).await.is_empty());
        let ready = join_in_order((0..50u32).map(std::future::ready)).await;
        assert_eq!(ready, (0..50).collect::<Vec<_>>());
    }
}
