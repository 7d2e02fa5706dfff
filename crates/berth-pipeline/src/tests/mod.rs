mod changes;
mod detect;
