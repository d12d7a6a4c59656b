use crate::Event;

/// What becomes of one input event.
///
/// - [`Output::Drop`]: nothing is published for it (a filter),
/// - [`Output::One`]: it is replaced by this event (a map); returning the
///   input event unchanged passes it through,
/// - [`Output::Many`]: it is split into these events, in order (a flat-map);
///   an empty list drops it like [`Output::Drop`].
///
/// An output event whose subject differs from the input's is routed to that
/// subject. All outputs of one input succeed or fail together downstream.
///
/// `Event`, `Vec<Event>` and `Option<Event>` convert into an `Output`:
///
/// ```
/// use weir_sdk::{Event, Output};
///
/// let event = Event::new("orders", "{}");
/// assert_eq!(Output::from(event.clone()), Output::One(event.clone()));
/// assert_eq!(Output::from(None), Output::Drop);
/// assert_eq!(Output::from(vec![event.clone(), event]).len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// Drop the event.
    #[default]
    Drop,
    /// Replace the event with this one (possibly the same, unchanged).
    One(Event),
    /// Split the event into these.
    Many(Vec<Event>),
}

impl Output {
    /// Drops the event: the same as [`Output::Drop`].
    ///
    /// ```
    /// assert!(weir_sdk::Output::drop().is_empty());
    /// ```
    pub fn drop() -> Output {
        Output::Drop
    }

    /// How many events will be published for the input.
    ///
    /// ```
    /// use weir_sdk::{Event, Output};
    /// assert_eq!(Output::Drop.len(), 0);
    /// assert_eq!(Output::One(Event::new("a", "")).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.events().len()
    }

    /// Whether no event will be published for the input.
    ///
    /// ```
    /// use weir_sdk::Output;
    /// assert!(Output::Many(vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The output events.
    ///
    /// ```
    /// use weir_sdk::{Event, Output};
    /// let output = Output::One(Event::new("a", "x"));
    /// assert_eq!(output.events()[0].payload, b"x");
    /// ```
    pub fn events(&self) -> &[Event] {
        match self {
            Output::Drop => &[],
            Output::One(event) => std::slice::from_ref(event),
            Output::Many(events) => events,
        }
    }

    /// Takes the output events.
    ///
    /// ```
    /// use weir_sdk::{Event, Output};
    /// let events = Output::One(Event::new("a", "x")).into_events();
    /// assert_eq!(events, [Event::new("a", "x")]);
    /// ```
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Output::Drop => Vec::new(),
            Output::One(event) => vec![event],
            Output::Many(events) => events,
        }
    }
}

/// Replaces the input with this event.
///
/// ```
/// let output: weir_sdk::Output = weir_sdk::Event::new("a", "").into();
/// assert_eq!(output.len(), 1);
/// ```
impl From<Event> for Output {
    fn from(event: Event) -> Output {
        Output::One(event)
    }
}

/// Splits the input into these events.
///
/// ```
/// use weir_sdk::{Event, Output};
/// let output: Output = vec![Event::new("a", "1"), Event::new("a", "2")].into();
/// assert_eq!(output.len(), 2);
/// ```
impl From<Vec<Event>> for Output {
    fn from(events: Vec<Event>) -> Output {
        Output::Many(events)
    }
}

/// `Some` replaces the input, `None` drops it.
///
/// ```
/// use weir_sdk::{Event, Output};
/// let output: Output = Some(Event::new("a", "long")).filter(|e| e.payload.len() > 2).into();
/// assert_eq!(output.len(), 1);
/// ```
impl From<Option<Event>> for Output {
    fn from(event: Option<Event>) -> Output {
        match event {
            Some(event) => Output::One(event),
            None => Output::Drop,
        }
    }
}
