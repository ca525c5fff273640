//! The one adapter from a pure `decide`/`evolve` pair to `cqrs_es::Aggregate`.

/// Implements `cqrs_es::Aggregate` for a type with `decide(&self, cmd) -> Result<Vec<E>, Err>`
/// and `evolve(&mut self, E)`. The adapter holds no logic; `TYPE` is persisted and frozen.
macro_rules! impl_aggregate {
    ($aggregate:ty, $type_name:literal, $command:ty, $event:ty, $error:ty) => {
        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $type_name;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in self.decide(command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(event);
            }
        }
    };
}

pub(crate) use impl_aggregate;
